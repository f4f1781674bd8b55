"""Drop-in conv and linear layers that run on the simulated systolic array.

A layer takes a float tensor and returns a float tensor, like the layer it
replaces; inside, it is integer arithmetic, as on an int8 accelerator:

1. quantize the input: q = clamp(round(x * (1 / s_in)) + z_in, qmin, qmax)
   (float32, round half to even), uint8 (quint8 convention) or int8;
2. lower to a GEMM (im2col for convs; one [G, M, K] GEMM for G groups) and
   run it on ``torch.ops.pyvs.systolic_matmul`` with uint8/int8 q times int8
   weights: this is where timing errors are injected;
3. outside the array, per output channel n: acc' = acc - z_in * sum_k w[k, n]
   + bias_q[n] (the zero-point correction and the int32 bias, whose scale is
   s_in * s_w[n]);
4. either requantize to the output grid, as an int8 model does between layers,
   y = clamp(round(float32(acc') * M[n]) + z_out, omin, omax) with
   M[n] = float32(s_in * s_w[n] / s_out), then return (y - z_out) * s_out;
   or (no output grid) return float32(float64(acc') * s_in * s_w[n]).

Weights are symmetric int8 (zero point 0), per output channel or per tensor.
"""
from __future__ import annotations

import math
import struct
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import systolic_matmul
from .config import FaultConfig, stream_id

_QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}
_ZERO_P = {}


def _zero_p(W: int) -> torch.Tensor:
    if W not in _ZERO_P:
        _ZERO_P[W] = torch.zeros(W, dtype=torch.float64)
    return _ZERO_P[W]


def quantize_bias(bias: torch.Tensor, in_scale: float, w_scale: torch.Tensor) -> torch.Tensor:
    """float bias [Cout] -> int32 on the accumulator's scale s_in * s_w[n]:
    round(b * (1 / (s_in * s_w))) in float32, as ATen quantizes int32 biases
    (b / (s_in * s_w) differs in the last bit now and then)."""
    scale = torch.tensor(in_scale, dtype=torch.float32) * w_scale.to(torch.float32)
    q = torch.round(bias.detach().float() * (1.0 / scale))
    return q.clamp(-2**31, 2**31 - 1).to(torch.int32)


class SystolicLayer(nn.Module):
    """Shared part of :class:`SystolicConv2d` and :class:`SystolicLinear`.

    Buffers: ``weight_q`` int8 (the layer's weight shape), ``w_scale`` float32
    [Cout], ``bias_q`` int32 [Cout], ``colsum`` int64 [Cout]. Attributes:
    in_scale/in_zero_point/in_dtype, out_scale/out_zero_point/out_min/out_max
    (out_scale None: float output), acc_bits (W), name, stream (random stream
    id), fault (:class:`FaultConfig` or None), image_offset, stats int64 [2, W].
    """

    def __init__(self, weight_q: torch.Tensor, w_scale: torch.Tensor, bias_q: Optional[torch.Tensor],
                 in_scale: float, in_zero_point: int, in_dtype: str = "uint8",
                 out_scale: Optional[float] = None, out_zero_point: int = 0, out_relu: bool = False,
                 out_dtype: str = "uint8", acc_bits: int = 32, name: str = ""):
        super().__init__()
        if weight_q.dtype != torch.int8:
            raise TypeError(f"{type(self).__name__}: weights must be int8, got {weight_q.dtype}")
        if in_dtype not in _QRANGE:
            raise ValueError(f"activation dtype must be 'uint8' or 'int8', got {in_dtype!r}")
        if not (math.isfinite(in_scale) and in_scale > 0):
            raise ValueError(f"input scale must be positive, got {in_scale}")
        qmin, qmax = _QRANGE[in_dtype]
        if not qmin <= in_zero_point <= qmax:
            raise ValueError(f"input zero point {in_zero_point} is outside the {in_dtype} range")
        if not 8 <= acc_bits <= 32:
            raise ValueError(f"acc_bits must be 8..32, got {acc_bits}")
        cout = weight_q.shape[0]
        w_scale = torch.as_tensor(w_scale, dtype=torch.float32).reshape(-1).expand(cout).clone()
        if bias_q is None:
            bias_q = torch.zeros(cout, dtype=torch.int32)
        self.register_buffer("weight_q", weight_q.contiguous())
        self.register_buffer("w_scale", w_scale)
        self.register_buffer("bias_q", bias_q.to(torch.int32))
        self.register_buffer("colsum", weight_q.reshape(cout, -1).to(torch.int64).sum(1))
        # Step 3 in one add: bias_q - z_in * colsum, per output channel.
        self.register_buffer("acc_offset", (self.bias_q.to(torch.int64) - int(in_zero_point) * self.colsum)
                             .to(torch.int32))
        self.in_scale, self.in_zero_point, self.in_dtype = float(in_scale), int(in_zero_point), in_dtype
        self.in_min, self.in_max = qmin, qmax
        self.out_scale = None if out_scale is None else float(out_scale)
        self.out_zero_point = int(out_zero_point)
        omin, omax = _QRANGE[out_dtype]
        self.out_min = self.out_zero_point if out_relu else omin
        self.out_max = omax
        self.acc_bits = int(acc_bits)
        self.name = name
        self.stream = stream_id(name)
        self.fault: Optional[FaultConfig] = None
        self.image_offset = 0
        self.stats = torch.zeros(2, self.acc_bits, dtype=torch.int64)
        # (groups, GEMM rows per image, K, N per group) of the last forward
        self.gemm_shape: Optional[tuple] = None
        # float32 scale products, as the int8 runtimes compute them
        s_in = torch.tensor(self.in_scale, dtype=torch.float32)
        self.register_buffer("acc_scale", s_in * self.w_scale)
        if self.out_scale is not None:
            self.register_buffer("requant", s_in * self.w_scale / torch.tensor(self.out_scale, dtype=torch.float32))

    # -- settings -------------------------------------------------------------
    def set_name(self, name: str) -> None:
        """Qualified module name; the random stream id follows from it."""
        self.name, self.stream = name, stream_id(name)

    def set_fault(self, config: Optional[FaultConfig]) -> None:
        if config is not None and config.p_bits is not None and config.p_bits.numel() != self.acc_bits:
            raise ValueError(f"layer {self.name!r}: the probability table has {config.p_bits.numel()} "
                             f"entries but the accumulator is {self.acc_bits} bits wide")
        self.fault = config

    # -- the arithmetic ---------------------------------------------------------
    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """float x -> uint8/int8 q on the input grid."""
        inv = 1.0 / torch.tensor(self.in_scale, dtype=torch.float32)
        q = (x.float() * inv).round_().add_(self.in_zero_point)  # x itself is left untouched
        return q.clamp_(self.in_min, self.in_max).to(torch.uint8 if self.in_dtype == "uint8" else torch.int8)

    def gemm(self, a: torch.Tensor, w: torch.Tensor, row_offset: int) -> torch.Tensor:
        """a [G, M, K] uint8/int8, w [G, K, N] int8 -> int32 [G, M, N] on the array."""
        cfg = self.fault
        if cfg is None:
            p, protect, seed, rows, impl = _zero_p(self.acc_bits), 0, 0, 256, "auto"
        else:
            p = _zero_p(self.acc_bits) if cfg.p_bits is None else cfg.p_bits
            protect, seed, rows, impl = cfg.protect, cfg.seed, cfg.rows, cfg.impl
        out, stats = systolic_matmul(a, w, p, protect=protect, seed=seed, layer=self.stream,
                                     row_offset=row_offset, rows=rows, impl=impl)
        self.stats += stats.cpu()
        return out

    def finish(self, acc: torch.Tensor) -> torch.Tensor:
        """int32 acc [..., Cout] -> float output [..., Cout] (steps 3 and 4).
        acc is the op's fresh output and is overwritten."""
        # int32 like the accumulator registers (wraps only if the array's output does)
        acc = acc.add_(self.acc_offset)
        if self.out_scale is None:
            return (acc.double() * self.acc_scale.double()).float()
        # round(acc * M) + z clamped to [omin, omax], minus z: the same as
        # clamping round(acc * M) to [omin - z, omax - z].
        y = acc.float().mul_(self.requant).round_()
        y.clamp_(self.out_min - self.out_zero_point, self.out_max - self.out_zero_point)
        return y.mul_(self.out_scale)

    def extra_repr(self) -> str:
        out = "float" if self.out_scale is None else f"scale={self.out_scale:.4g}, zp={self.out_zero_point}"
        return (f"name={self.name!r}, in=({self.in_dtype}, scale={self.in_scale:.4g}, "
                f"zp={self.in_zero_point}), out=({out}), acc_bits={self.acc_bits}")


class SystolicConv2d(SystolicLayer):
    """Conv2d on the systolic array. Input float [N, Cin, H, W]; output float
    [N, Cout, Ho, Wo]. Groups (depthwise too) run as one [G, M, K] GEMM; GEMM
    row m = (image, output pixel), global row = image_offset * Ho * Wo + m."""

    def __init__(self, weight_q, w_scale, bias_q, in_scale, in_zero_point, *, stride=1, padding=0,
                 dilation=1, groups=1, **kw):
        super().__init__(weight_q, w_scale, bias_q, in_scale, in_zero_point, **kw)
        if weight_q.dim() != 4:
            raise ValueError(f"SystolicConv2d: weight must be [Cout, Cin/groups, kh, kw], got {tuple(weight_q.shape)}")
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
        self.stride, self.padding, self.dilation = pair(stride), pair(padding), pair(dilation)
        self.groups = int(groups)
        cout, cin_g, kh, kw_ = weight_q.shape
        if cout % self.groups:
            raise ValueError(f"SystolicConv2d: {cout} output channels do not split into {groups} groups")
        self.in_channels, self.out_channels, self.kernel_size = cin_g * self.groups, cout, (kh, kw_)
        g = self.groups
        # [G, K, Cout/G]: the GEMM's weight operand, K = (c, i, j) as unfold orders it
        self.register_buffer("w_gemm", weight_q.reshape(g, cout // g, cin_g * kh * kw_).transpose(1, 2).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"layer {self.name!r} (SystolicConv2d) expects a 4-D input [N, C, H, W], "
                             f"got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"layer {self.name!r} expects {self.in_channels} input channels, got {x.shape[1]}")
        n, _, h, w = x.shape
        kh, kw = self.kernel_size
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        q = self.quantize_input(x)
        g = self.groups
        cg = self.in_channels // g
        if (kh, kw, sh, sw, ph, pw) == (1, 1, 1, 1, 0, 0):
            cols = q.reshape(n, g, cg, h, w).permute(1, 0, 3, 4, 2)               # [G, N, H, W, Cg]
        else:
            # Padding is real zero, i.e. the zero point on the quantized grid.
            # im2col on the 8-bit values, K ordered (c, i, j) as torch's unfold
            # orders it: one strided copy per kernel tap, which is 3x faster
            # than one 7-D gather (depthwise convs spend most of a CPU
            # forward pass here).
            qp = F.pad(q, (pw, pw, ph, ph), value=self.in_zero_point)
            src = qp.view(n, g, cg, qp.shape[2], qp.shape[3]).permute(1, 0, 3, 4, 2)  # [G, N, Hp, Wp, Cg]
            cols = torch.empty((g, n, ho, wo, cg, kh, kw), dtype=q.dtype, device=q.device)
            for i in range(kh):
                for j in range(kw):
                    cols[..., i, j] = src[:, :, i * dh: i * dh + sh * (ho - 1) + 1: sh,
                                          j * dw: j * dw + sw * (wo - 1) + 1: sw]
        a = cols.reshape(g, n * ho * wo, -1).contiguous()
        self.gemm_shape = (g, ho * wo, a.shape[-1], self.out_channels // g)
        acc = self.gemm(a, self.w_gemm, self.image_offset * ho * wo)             # [G, N*L, Cout/G]
        acc = acc[0] if g == 1 else acc.permute(1, 0, 2).reshape(n * ho * wo, self.out_channels)
        return self.finish(acc).view(n, ho, wo, self.out_channels).permute(0, 3, 1, 2).contiguous()

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, " + super().extra_repr())


class SystolicLinear(SystolicLayer):
    """Linear on the systolic array. Input float [N, *, in_features]; output
    float [N, *, out_features]; global row = image_offset * prod(*) + m."""

    def __init__(self, weight_q, w_scale, bias_q, in_scale, in_zero_point, **kw):
        super().__init__(weight_q, w_scale, bias_q, in_scale, in_zero_point, **kw)
        if weight_q.dim() != 2:
            raise ValueError(f"SystolicLinear: weight must be [out, in], got {tuple(weight_q.shape)}")
        self.out_features, self.in_features = weight_q.shape
        self.register_buffer("w_gemm", weight_q.t().contiguous().unsqueeze(0))  # [1, K, N]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"layer {self.name!r} (SystolicLinear) expects [N, ..., {self.in_features}], "
                             f"got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        per_image = math.prod(lead[1:])
        q = self.quantize_input(x).reshape(1, -1, self.in_features)
        self.gemm_shape = (1, per_image, self.in_features, self.out_features)
        acc = self.gemm(q, self.w_gemm, self.image_offset * per_image)[0]
        return self.finish(acc).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, " + super().extra_repr()


class FakeQuant(nn.Module):
    """Rounds a float tensor to a quantization grid and back (what an int8
    model's quantize step, or an op's requantized output, does to values)."""

    def __init__(self, scale: float, zero_point: int, dtype: str = "uint8"):
        super().__init__()
        self.scale, self.zero_point, self.dtype = float(scale), int(zero_point), dtype
        self.qmin, self.qmax = _QRANGE[dtype]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inv = 1.0 / torch.tensor(self.scale, dtype=torch.float32)
        q = (torch.round(x.float() * inv) + self.zero_point).clamp_(self.qmin, self.qmax)
        return (q - self.zero_point) * torch.tensor(self.scale, dtype=torch.float32)

    def extra_repr(self) -> str:
        return f"scale={self.scale:.4g}, zero_point={self.zero_point}, dtype={self.dtype}"


def _f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def _f32_from_bits(b: int) -> float:
    return struct.unpack("<f", struct.pack("<I", b & 0xFFFFFFFF))[0]


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


class QuantFunctional(nn.Module):
    """Float stand-in for torch.ao's QFunctional (quantized add, cat, ...):
    the result is rounded to the op's output grid.

    When the input grids of ``add``/``add_relu`` are known (``inputs``,
    recorded by :func:`pyvs.nn.from_quantized`), the add is QNNPACK's
    fixed-point uint8 add, step for step (each input times an integer
    multiplier, a rounding right shift): bit-identical to torchvision's int8
    models on the qnnpack engine. Otherwise the float sum is rounded."""

    def __init__(self, scale: float, zero_point: int, inputs=None):
        super().__init__()
        self.out = FakeQuant(scale, zero_point)
        self.inputs = inputs  # ((s_a, z_a), (s_b, z_b)) or None

    def _fixed_point_add(self, a, b, relu):
        (sa, za), (sb, zb) = self.inputs
        so, zo = self.out.scale, self.out.zero_point
        qa = (torch.round(a.float() / torch.tensor(sa, dtype=torch.float32)) + za).to(torch.int64)
        qb = (torch.round(b.float() / torch.tensor(sb, dtype=torch.float32)) + zb).to(torch.int64)
        a_os, b_os = _f32(_f32(sa) / _f32(so)), _f32(_f32(sb) / _f32(so))
        shift = 21 - ((_f32_bits(max(a_os, b_os)) >> 23) - 127)
        # a_os * 2^shift (exponent bump), rounded half to even like lrintf
        am = round(_f32_from_bits(_f32_bits(a_os) + (shift << 23)))
        bm = round(_f32_from_bits(_f32_bits(b_os) + (shift << 23)))
        acc = qa * am + qb * bm - (am * za + bm * zb)
        mask = (1 << shift) - 1
        rem = (acc & mask) - (acc < 0).to(torch.int64)
        acc = (acc >> shift) + (rem > (mask >> 1)).to(torch.int64)
        y = (acc + zo).clamp_(zo if relu else 0, 255)
        return (y - zo).float() * torch.tensor(so, dtype=torch.float32)

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
