"""The integer runtime that the systolic layers and the converted models
emulate, step for step as torch's int8 kernels (QNNPACK) compute it:
quantization of float tensors onto an 8-bit grid, int32 biases, the
requantization of int32 accumulators to the next layer's grid, and the
fixed-point quantized add. Float tensors carry the values between layers;
every rounding happens where the int8 runtime rounds. The one-pass
quantize and requantize steps are the compiled ops
(:func:`pyvs.ops.quantize`, :func:`pyvs.ops.requantize`)."""
from __future__ import annotations

import struct
from typing import Optional, Tuple

import torch
from torch import nn


QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}  # 8-bit activation grids


def check_dtype(dtype: str, what: str = "activation dtype") -> str:
    if dtype not in QRANGE:
        raise ValueError(f"{what} must be 'uint8' or 'int8', got {dtype!r}")
    return dtype


def f32(x) -> torch.Tensor:
    """A scalar as a float32 tensor: the precision the int8 runtimes compute scales in."""
    return torch.tensor(x, dtype=torch.float32)


def quantize_bias(bias: torch.Tensor, in_scale: float, w_scale: torch.Tensor) -> torch.Tensor:
    """float bias [Cout] -> int32 on the accumulator's scale s_in * s_w[n]:
    round(b * (1 / (s_in * s_w))) in float32, as ATen quantizes int32 biases
    (b / (s_in * s_w) differs in the last bit now and then)."""
    scale = f32(in_scale) * w_scale.to(torch.float32)
    q = torch.round(bias.detach().float() * (1.0 / scale))
    return q.clamp(-2**31, 2**31 - 1).to(torch.int32)


class FakeQuant(nn.Module):
    """Rounds a float tensor to a quantization grid and back (what an int8
    model's quantize step, or an op's requantized output, does to values)."""

    def __init__(self, scale: float, zero_point: int, dtype: str = "uint8"):
        super().__init__()
        self.scale, self.zero_point, self.dtype = float(scale), int(zero_point), check_dtype(dtype)
        self.qmin, self.qmax = QRANGE[dtype]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = (torch.round(x.float() * (1.0 / f32(self.scale))) + self.zero_point).clamp_(self.qmin, self.qmax)
        return (q - self.zero_point) * f32(self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale:.4g}, zero_point={self.zero_point}, dtype={self.dtype}"


def _f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def _f32_from_bits(b: int) -> float:
    return struct.unpack("<f", struct.pack("<I", b & 0xFFFFFFFF))[0]


def _round_f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


Grid = Tuple[float, int]  # (scale, zero point) of a uint8 tensor


class QuantFunctional(nn.Module):
    """Float stand-in for torch.ao's QFunctional (quantized add, cat, ...):
    the result is rounded to the op's output grid.

    When the input grids of ``add``/``add_relu`` are known (``inputs``,
    recorded by :func:`pyvs.nn.from_quantized`), the add is QNNPACK's
    fixed-point uint8 add, step for step (each input times an integer
    multiplier, a rounding right shift): bit-identical to torchvision's int8
    models on the qnnpack engine. Otherwise the float sum is rounded."""

    def __init__(self, scale: float, zero_point: int, inputs: Optional[Tuple[Grid, Grid]] = None):
        super().__init__()
        self.out = FakeQuant(scale, zero_point)
        self.inputs = inputs

    def _fixed_point_add(self, a, b, relu):
        (sa, za), (sb, zb) = self.inputs
        so, zo = self.out.scale, self.out.zero_point
        qa = (torch.round(a.float() / f32(sa)) + za).to(torch.int64)
        qb = (torch.round(b.float() / f32(sb)) + zb).to(torch.int64)
        a_os, b_os = _round_f32(_round_f32(sa) / _round_f32(so)), _round_f32(_round_f32(sb) / _round_f32(so))
        shift = 21 - ((_f32_bits(max(a_os, b_os)) >> 23) - 127)
        # a_os * 2^shift (exponent bump), rounded half to even like lrintf
        am = round(_f32_from_bits(_f32_bits(a_os) + (shift << 23)))
        bm = round(_f32_from_bits(_f32_bits(b_os) + (shift << 23)))
        acc = qa * am + qb * bm - (am * za + bm * zb)
        mask = (1 << shift) - 1
        rem = (acc & mask) - (acc < 0).to(torch.int64)
        acc = (acc >> shift) + (rem > (mask >> 1)).to(torch.int64)
        y = (acc + zo).clamp_(zo if relu else 0, 255)
        return (y - zo).float() * f32(so)

    def add(self, a, b):
        if self.inputs is not None:
            return self._fixed_point_add(a, b, relu=False)
        return self.out(a + b)

    def add_relu(self, a, b):
        if self.inputs is not None:
            return self._fixed_point_add(a, b, relu=True)
        return self.out(torch.relu(a + b))

    def mul(self, a, b):
        return self.out(a * b)

    def cat(self, xs, dim=0):
        return self.out(torch.cat(xs, dim=dim))

    def add_scalar(self, a, s):
        return self.out(a + s)

    def mul_scalar(self, a, s):
        return self.out(a * s)


# ---- average pooling on quantized tensors -----------------------------------
#
# torch pools a quantized tensor in integers: per window, acc = sum(q - z) and
# q_out = z + lrintf(float32(acc) * float32(1 / area)), rounding half to even
# (quantized adaptive_avg_pool2d on QNNPACK and FBGEMM). Pooling the float
# values instead differs in ties and in float rounding: at 224x224 input
# MobileNetV2's 7x7 map never ties, at 256x256 its 8x8 map does.

def _window(i: int, n_in: int, n_out: int) -> slice:
    return slice((i * n_in) // n_out, -((-(i + 1) * n_in) // n_out))  # floor, ceil


def int_adaptive_avg_pool2d(x: torch.Tensor, output_size, grid: Grid) -> torch.Tensor:
    """Adaptive average pooling of float x [N, C, H, W] whose values lie on
    the uint8 grid (scale, zero point), as torch pools the quantized tensor."""
    scale, zp = grid
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    h, w = x.shape[-2:]
    oh, ow = oh or h, ow or w  # None keeps the input size
    q = torch.round(x.float() * (1.0 / f32(scale))).to(torch.int64)  # q - z, exactly
    out = torch.empty(x.shape[:-2] + (oh, ow), dtype=torch.float32, device=x.device)
    for i in range(oh):
        for j in range(ow):
            win = q[..., _window(i, h, oh), _window(j, w, ow)]
            acc = win.sum((-2, -1)).to(torch.float32)
            y = torch.round(acc * f32(1.0 / (win.shape[-2] * win.shape[-1])).to(x.device))
            out[..., i, j] = y.clamp_(-zp, 255 - zp)
    return out.mul_(f32(scale).to(x.device))


class IntegerPools(torch.overrides.TorchFunctionMode):
    """Replaces the k-th ``F.adaptive_avg_pool2d`` call of a forward pass by
    :func:`int_adaptive_avg_pool2d` on ``grids[k]`` (None: left in float).
    The grids are those the quantized model's pools received, in call order
    (recorded by :func:`pyvs.nn.from_quantized`)."""

    def __init__(self, grids):
        super().__init__()
        self.grids, self.calls = list(grids), 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.adaptive_avg_pool2d:
            k, self.calls = self.calls, self.calls + 1
            if k >= len(self.grids):
                raise RuntimeError(f"pyvs: the model pooled {k + 1} times, the int8 model it was "
                                   f"converted from {len(self.grids)} times")
            if self.grids[k] is not None:
                size = args[1] if len(args) > 1 else kwargs["output_size"]
                return int_adaptive_avg_pool2d(args[0], size, self.grids[k])
        return func(*args, **kwargs)


def _enter_integer_pools(module, args):
    module._pyvs_pools = IntegerPools(module.pyvs_pool_grids)
    module._pyvs_pools.__enter__()


def _leave_integer_pools(module, args, output):
    mode = module.__dict__.pop("_pyvs_pools", None)
    if mode is not None:
        mode.__exit__(None, None, None)


def pool_integers(model: nn.Module, grids) -> None:
    """Makes every forward pass of ``model`` pool as torch's int8 kernels do
    (see :class:`IntegerPools`)."""
    model.pyvs_pool_grids = list(grids)
    model.register_forward_pre_hook(_enter_integer_pools)
    model.register_forward_hook(_leave_integer_pools, always_call=True)


class RecordPools(torch.overrides.TorchFunctionMode):
    """Records the grid of every ``F.adaptive_avg_pool2d`` input of a
    quantized model's forward pass, in call order (None for float inputs)."""

    def __init__(self):
        super().__init__()
        self.grids = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.adaptive_avg_pool2d:
            x = args[0]
            quantized = x.is_quantized and x.qscheme() == torch.per_tensor_affine and x.dtype == torch.quint8
            self.grids.append((x.q_scale(), x.q_zero_point()) if quantized else None)
        return func(*args, **(kwargs or {}))
