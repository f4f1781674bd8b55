"""Drop-in conv and linear layers that run on the simulated systolic array.

A layer takes a float tensor and returns a float tensor, like the layer it
replaces; inside, it is integer arithmetic, as on an int8 accelerator
(:mod:`pyvs.nn.int8` emulates the runtime's roundings):

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

Weights are symmetric int8 (zero point 0), per output channel or per tensor,
kept in PyTorch's [Cout, Cin/groups, kh, kw] / [out, in] layout: as the
GEMM's [G, K, N] operand that is the column-major layout the int8 GEMMs
want, so no weight is ever copied per call. The global image offset and
the probe that collects counts come from :func:`pyvs.nn.probe.forward_pass`.
"""
from __future__ import annotations

import math
import zlib
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ..accumulator import check_width
from ..checks import integer
from ..hardware import ACC_BITS
from ..ops import quantize, requantize, systolic_matmul
from ..schedule import resolve
from .config import FaultConfig
from .int8 import QRANGE, check_dtype, f32
from .probe import current_pass

_ZERO_P: Dict[int, torch.Tensor] = {}


def _zero_p(W: int) -> torch.Tensor:
    if W not in _ZERO_P:
        _ZERO_P[W] = torch.zeros(W, dtype=torch.float64)
    return _ZERO_P[W]


def stream_id(qualified_name: str) -> int:
    """A layer's random stream id: CRC-32 of its qualified module name, so it
    depends on nothing but the name (not on the order layers are visited)."""
    return zlib.crc32(qualified_name.encode()) & 0xFFFFFFFF


class SystolicLayer(nn.Module):
    """Shared part of :class:`SystolicConv2d` and :class:`SystolicLinear`.

    Buffers: ``weight_q`` int8 (the layer's weight shape), ``w_scale`` float32
    [Cout], ``bias_q`` int32 [Cout], ``acc_offset`` int32 [Cout] (bias minus
    the input zero point's share), ``acc_scale`` float32 [Cout] and, with an
    output grid, ``requant`` float32 [Cout]. Attributes: in_scale /
    in_zero_point / in_dtype, out_scale / out_zero_point / out_min / out_max
    (out_scale None: float output), acc_bits (W), name, stream (random stream
    id), fault (:class:`FaultConfig` or None).
    """

    def __init__(self, weight_q: torch.Tensor, w_scale: torch.Tensor, bias_q: Optional[torch.Tensor],
                 in_scale: float, in_zero_point: int, in_dtype: str = "uint8",
                 out_scale: Optional[float] = None, out_zero_point: int = 0, out_relu: bool = False,
                 out_dtype: str = "uint8", acc_bits: int = ACC_BITS, name: str = ""):
        super().__init__()
        if weight_q.dtype != torch.int8:
            raise TypeError(f"{type(self).__name__}: weights must be int8, got {weight_q.dtype}")
        self.in_dtype, self.in_scale = check_dtype(in_dtype), _scale(in_scale, "input scale")
        self.in_min, self.in_max = QRANGE[in_dtype]
        self.in_zero_point = integer(in_zero_point, "input zero point", self.in_min, self.in_max)
        self.acc_bits = check_width(acc_bits)
        cout = weight_q.shape[0]
        w_scale = _weight_scales(w_scale, cout, type(self).__name__)
        bias_q = torch.zeros(cout, dtype=torch.int32) if bias_q is None else bias_q.to(torch.int32)
        colsum = weight_q.reshape(cout, -1).to(torch.int64).sum(1)
        self.register_buffer("weight_q", weight_q.contiguous())
        self.register_buffer("w_scale", w_scale)
        self.register_buffer("bias_q", bias_q)
        # Step 3 in one add: bias_q - z_in * colsum, per output channel.
        self.register_buffer("acc_offset", (bias_q.to(torch.int64) - self.in_zero_point * colsum)
                             .to(torch.int32))
        # float32 scale products, as the int8 runtimes compute them
        self.register_buffer("acc_scale", f32(self.in_scale) * w_scale)
        self.out_scale = None if out_scale is None else _scale(out_scale, "output scale")
        self.out_zero_point = int(out_zero_point)
        omin, omax = QRANGE[check_dtype(out_dtype, "output dtype")]
        self.out_min, self.out_max = (self.out_zero_point if out_relu else omin), omax
        if self.out_scale is not None:
            self.register_buffer("requant", self.acc_scale / f32(self.out_scale))
        self.name, self.stream = name, stream_id(name)
        self.fault: Optional[FaultConfig] = None
        self.images_seen = 0  # images run outside forward_pass blocks (their global index)

    def set_fault(self, config: Optional[FaultConfig]) -> None:
        if config is not None and not isinstance(config, FaultConfig):
            raise TypeError(f"layer {self.name!r}: expected a FaultConfig or None, got "
                            f"{type(config).__name__}")
        if config is not None and config.acc_bits not in (None, self.acc_bits):
            raise ValueError(f"layer {self.name!r}: the probability table has {config.acc_bits} "
                             f"entries but the accumulator is {self.acc_bits} bits wide")
        self.fault = config
        self.images_seen = 0

    def gemm(self, a: torch.Tensor, w: torch.Tensor, rows_per_image: int) -> torch.Tensor:
        """a [G, M, K] uint8/int8, w [G, K, N] int8 -> int32 [G, M, N] on the
        array; a's rows are those of whole images, rows_per_image each."""
        cfg = self.fault or FaultConfig()
        # Conditioned injection: the joint tables are the law, p_bits only their rates.
        p = _zero_p(self.acc_bits) if cfg.p_bits is None or cfg.joint is not None else cfg.p_bits
        ctx = current_pass()
        first = ctx.image_offset
        if not ctx.explicit:  # a plain call: this layer numbers its images (see pyvs.nn.probe)
            first, self.images_seen = self.images_seen, self.images_seen + a.shape[1] // max(rows_per_image, 1)
        if ctx.capture is not None:
            ctx.capture(self.name, a, w, rows_per_image, first)
        out, stats = systolic_matmul(a, w, p, protect=cfg.protect, seed=cfg.seed, layer=self.stream,
                                     row_offset=first * rows_per_image, rows=cfg.tile_rows(a.shape[2]),
                                     impl=cfg.impl, drop=cfg.on_error == "drop", patterns=cfg.patterns,
                                     joint=cfg.joint)
        if ctx.probe is not None:
            ctx.probe.record(self.name, stats, (w.shape[0], rows_per_image, w.shape[1], w.shape[2]))
        return out

    def finish(self, acc: torch.Tensor, channels_first: bool = False) -> torch.Tensor:
        """int32 acc [M, Cout] (or [Cout, M] with channels_first) -> float
        output of the same shape (steps 3 and 4). acc is the op's fresh output
        and may be overwritten."""
        if self.out_scale is not None:
            return requantize(acc, self.acc_offset, self.requant, self.out_min - self.out_zero_point,
                              self.out_max - self.out_zero_point, self.out_scale,
                              channel_dim=0 if channels_first else 1)
        per_channel = (lambda t: t.view(-1, 1)) if channels_first else (lambda t: t)  # noqa: E731
        # int32 like the accumulator registers (wraps only if the array's output does)
        acc = acc.add_(per_channel(self.acc_offset))
        return (acc.double() * per_channel(self.acc_scale).double()).float()

    def extra_repr(self) -> str:
        out = "float" if self.out_scale is None else f"scale={self.out_scale:.4g}, zp={self.out_zero_point}"
        return (f"name={self.name!r}, in=({self.in_dtype}, scale={self.in_scale:.4g}, "
                f"zp={self.in_zero_point}), out=({out}), acc_bits={self.acc_bits}")


def _scale(value, what: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be positive, got {value}")
    return float(value)


def _weight_scales(w_scale, cout: int, who: str) -> torch.Tensor:
    """The per-output-channel weight scales as float32 [cout], each finite and > 0."""
    if isinstance(w_scale, torch.Tensor) and (w_scale.is_complex() or w_scale.dtype == torch.bool):
        raise TypeError(f"{who}: w_scale must be real, got {w_scale.dtype}")
    try:
        s = torch.as_tensor(w_scale, dtype=torch.float32).reshape(-1).expand(cout).clone()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{who}: w_scale must be one scale or one per output channel ({cout})") from None
    if not bool(torch.isfinite(s).all() and (s > 0).all()):
        raise ValueError(f"{who}: every weight scale must be a positive number, got {s.tolist()[:4]}...")
    return s


def _pair(v, name: str, lo: int) -> Tuple[int, int]:
    """A conv's stride, padding or dilation as two ints >= lo."""
    pair = (v, v) if not isinstance(v, (tuple, list)) else tuple(v)
    if len(pair) != 2:
        raise ValueError(f"SystolicConv2d: {name} must be an int or a pair, got {v!r}")
    return tuple(integer(x, f"SystolicConv2d: {name}", lo) for x in pair)


def _float_input(x, who: str) -> None:
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise TypeError(f"{who} expects a real floating-point tensor, got "
                        f"{x.dtype if isinstance(x, torch.Tensor) else type(x).__name__}")


class SystolicConv2d(SystolicLayer):
    """Conv2d on the systolic array. Input float [N, Cin, H, W]; output float
    [N, Cout, Ho, Wo]. Groups (depthwise too) run as one [G, M, K] GEMM; GEMM
    row m = (image, output pixel), with Ho * Wo rows per image.

    Layouts follow the data, never a copy for its own sake: a conv's output
    is channels-last in memory (the GEMM's [M, Cout] rows), and a depthwise
    conv's is channel-major ([Cout, M]) on the CPU and channels-last on CUDA
    (the op's layout there, :func:`pyvs.ops.groups_innermost`); 1x1 convs
    read either as their GEMM operand (channels-last rows are what
    cuBLASLt's int8 GEMM takes without a copy), and depthwise convs gather
    their taps from channels-last rows."""

    def __init__(self, weight_q, w_scale, bias_q, in_scale, in_zero_point, *, stride=1, padding=0,
                 dilation=1, groups=1, **kw):
        super().__init__(weight_q, w_scale, bias_q, in_scale, in_zero_point, **kw)
        if weight_q.dim() != 4:
            raise ValueError(f"SystolicConv2d: weight must be [Cout, Cin/groups, kh, kw], got {tuple(weight_q.shape)}")
        self.stride, self.padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
        self.dilation, self.groups = _pair(dilation, "dilation", 1), integer(groups, "SystolicConv2d: groups", 1)
        cout, cin_g, kh, kw_ = weight_q.shape
        if cout % self.groups:
            raise ValueError(f"SystolicConv2d: {cout} output channels do not split into {groups} groups")
        self.in_channels, self.out_channels, self.kernel_size = cin_g * self.groups, cout, (kh, kw_)
        self.depthwise = self.groups == self.in_channels == cout  # one input and one output channel per group

    def gemm_weights(self) -> torch.Tensor:
        """int8 [G, K, N]: a column-major view of weight_q, K = (c, i, j) as unfold orders it."""
        g = self.groups
        return self.weight_q.view(g, self.out_channels // g, -1).transpose(1, 2)

    def _windows(self, src: torch.Tensor, i: int, j: int, ho: int, wo: int) -> torch.Tensor:
        """Tap (i, j) of every output pixel: src[..., Hp, Wp, C] strided by the conv."""
        (sh, sw), (dh, dw) = self.stride, self.dilation
        return src[..., i * dh: i * dh + sh * (ho - 1) + 1: sh, j * dw: j * dw + sw * (wo - 1) + 1: sw, :]

    def taps(self, q: torch.Tensor, ho: int, wo: int) -> torch.Tensor:
        """Depthwise: 8-bit q [N, C, H, W] (any layout) -> [C, N * Ho * Wo, kh * kw],
        a view of a tap-major buffer [kh * kw, N * Ho * Wo, C]: one copy of
        channels-last rows per tap. Padding is the zero point (a real 0)."""
        n, c, h, w = q.shape
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        qp = q.new_full((n, h + 2 * ph, w + 2 * pw, c), self.in_zero_point)
        qp[:, ph: ph + h, pw: pw + w, :] = q.permute(0, 2, 3, 1)
        cols = q.new_empty((kh * kw, n, ho, wo, c))
        for i in range(kh):
            for j in range(kw):
                cols[i * kw + j] = self._windows(qp, i, j, ho, wo)
        return cols.view(kh * kw, n * ho * wo, c).permute(2, 1, 0)

    def im2col(self, q: torch.Tensor, ho: int, wo: int) -> torch.Tensor:
        """8-bit q [N, Cin, H, W] (any layout) -> GEMM rows [G, N * Ho * Wo, K],
        K ordered (c, i, j) as torch's unfold orders it; a view for 1x1 convs
        on channels-last input. Padding is the zero point (a real 0)."""
        n, _, h, w = q.shape
        g, (kh, kw), (ph, pw) = self.groups, self.kernel_size, self.padding
        cg = self.in_channels // g
        rows = q.permute(0, 2, 3, 1).reshape(n, h, w, g, cg).permute(3, 0, 1, 2, 4)  # [G, N, H, W, Cg]
        if (kh, kw, *self.stride, ph, pw) == (1, 1, 1, 1, 0, 0):
            return rows.reshape(g, n * h * w, cg)
        padded = rows.new_full((g, n, h + 2 * ph, w + 2 * pw, cg), self.in_zero_point)
        padded[:, :, ph: ph + h, pw: pw + w, :] = rows
        cols = q.new_empty((g, n, ho, wo, cg, kh, kw))
        for i in range(kh):  # one strided copy per kernel tap
            for j in range(kw):
                cols[..., i, j] = self._windows(padded, i, j, ho, wo)
        return cols.view(g, n * ho * wo, cg * kh * kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _float_input(x, f"layer {self.name!r} (SystolicConv2d)")
        if x.dim() != 4:
            raise ValueError(f"layer {self.name!r} (SystolicConv2d) expects a 4-D input [N, C, H, W], "
                             f"got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"layer {self.name!r} expects {self.in_channels} input channels, got {x.shape[1]}")
        n, _, h, w = x.shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        (ph, pw), (dh, dw) = self.padding, self.dilation
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if ho < 1 or wo < 1:
            raise ValueError(f"layer {self.name!r}: a {h}x{w} input, padded by {self.padding}, is smaller "
                             f"than the dilated {kh}x{kw} kernel")
        q = quantize(x, self.in_scale, self.in_zero_point, self.in_dtype)
        if self.depthwise:
            acc = self.gemm(self.taps(q, ho, wo), self.gemm_weights(), ho * wo)[..., 0]  # [C, N*L]
            if self.out_channels > 1 and acc.stride(0) == 1:  # channels innermost (CUDA): channels-last
                y = self.finish(acc.t())
                return y.view(n, ho, wo, self.out_channels).permute(0, 3, 1, 2)
            y = self.finish(acc, channels_first=True)
            return y.view(self.out_channels, n, ho, wo).permute(1, 0, 2, 3)
        acc = self.gemm(self.im2col(q, ho, wo), self.gemm_weights(), ho * wo)       # [G, N*L, Cout/G]
        acc = acc[0] if self.groups == 1 else acc.permute(1, 0, 2).reshape(n * ho * wo, self.out_channels)
        return self.finish(acc).view(n, ho, wo, self.out_channels).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, " + super().extra_repr())


class SystolicLinear(SystolicLayer):
    """Linear on the systolic array. Input float [N, *, in_features]; output
    float [N, *, out_features]; prod(*) GEMM rows per image."""

    def __init__(self, weight_q, w_scale, bias_q, in_scale, in_zero_point, **kw):
        super().__init__(weight_q, w_scale, bias_q, in_scale, in_zero_point, **kw)
        if weight_q.dim() != 2:
            raise ValueError(f"SystolicLinear: weight must be [out, in], got {tuple(weight_q.shape)}")
        self.out_features, self.in_features = weight_q.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _float_input(x, f"layer {self.name!r} (SystolicLinear)")
        if x.dim() < 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"layer {self.name!r} (SystolicLinear) expects [N, ..., {self.in_features}], "
                             f"got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        q = quantize(x, self.in_scale, self.in_zero_point, self.in_dtype).reshape(1, -1, self.in_features)
        w = self.weight_q.unsqueeze(0).transpose(1, 2)  # [1, K, N], column-major
        acc = self.gemm(q, w, math.prod(lead[1:]))[0]
        return self.finish(acc).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, " + super().extra_repr()


def systolic_layers(model: nn.Module) -> List[Tuple[str, SystolicLayer]]:
    """(qualified name, layer) for every systolic layer of a model."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SystolicLayer)]


LAYER_KINDS = ("stem", "depthwise", "grouped", "expand", "project", "pointwise", "conv", "linear")


def layer_kinds(model: nn.Module) -> Dict[str, str]:
    """{qualified name: kind} of every systolic layer, in the model's order:
    'stem' (the first layer), 'linear', 'depthwise' (one channel per group),
    'grouped' (other grouped convs), 1x1 convs 'expand' / 'project' /
    'pointwise' (more / fewer / as many output as input channels), 'conv'
    (any other convolution). What per-kind voltage schedules and the timing
    study group layers by."""
    kinds = {}
    for i, (name, layer) in enumerate(systolic_layers(model)):
        if i == 0:
            kinds[name] = "stem"
        elif isinstance(layer, SystolicLinear):
            kinds[name] = "linear"
        elif layer.depthwise:
            kinds[name] = "depthwise"
        elif layer.groups > 1:
            kinds[name] = "grouped"
        elif layer.kernel_size == (1, 1):
            cin, cout = layer.in_channels, layer.out_channels
            kinds[name] = "expand" if cout > cin else "project" if cout < cin else "pointwise"
        else:
            kinds[name] = "conv"
    return kinds


def model_width(model: nn.Module) -> int:
    """The accumulator width of a converted model's layers, bits (a
    ValueError if it has none or they differ)."""
    widths = {layer.acc_bits for _, layer in systolic_layers(model)}
    if not widths:
        raise ValueError("the model has no systolic layers: convert it with pyvs.convert first")
    if len(widths) > 1:
        raise ValueError(f"the model's layers have different accumulator widths {sorted(widths)}")
    return widths.pop()


def set_schedule(model: nn.Module, table, schedule, **fault) -> Dict[str, float]:
    """Runs every systolic layer at its own supply: ``table`` a
    :class:`pyvs.timing.ErrorTable` holding every voltage used (per-layer
    tables give each layer its own rates), ``schedule`` one voltage or
    {layer kind, layer name or 'default': V} (:func:`pyvs.schedule.resolve`),
    ``fault`` the other :class:`FaultConfig` fields (protect, seed, rows,
    dataflow, on_error, impl). Returns the resolved schedule {layer: V}."""
    resolved = resolve(schedule, layer_kinds(model))
    rates = table.schedule_rates(resolved)
    set_faults(model, {name: FaultConfig(rates[name], **fault) for name in resolved})
    return resolved


def set_faults(model: nn.Module, config: Union[FaultConfig, Dict[str, FaultConfig], None]) -> None:
    """Sets the fault config of every systolic layer (one FaultConfig or None),
    or of the named layers (a dict from qualified name to FaultConfig; a name
    that is not a systolic layer is an error)."""
    layers = dict(systolic_layers(model))
    if isinstance(config, dict):
        unknown = sorted(set(config) - set(layers))
        if unknown:
            raise ValueError(f"set_faults: {unknown} are not systolic layers of this model")
        for name, cfg in config.items():
            layers[name].set_fault(cfg)
    elif config is None or isinstance(config, FaultConfig):
        for layer in layers.values():
            layer.set_fault(config)
    else:
        raise TypeError(f"set_faults: expected a FaultConfig, a dict of them or None, got "
                        f"{type(config).__name__}")
