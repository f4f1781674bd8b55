"""Swap a model's conv and linear layers for systolic ones.

Two entry points, one per kind of model:

- an int8 model made by torch.ao (e.g. ``torchvision.models.quantization``):
  its integer weights, scales and zero points are imported as they are
  (:func:`from_quantized`); torch's quantized tensor types are read once,
  here, and never used at run time;
- a float model: post-training quantization (:mod:`pyvs.quantize`) first.

:func:`convert` picks the right one.
"""
from __future__ import annotations

import copy
from typing import Callable, Dict, Iterable, Optional

import torch
from torch import nn

from .layers import FakeQuant, QuantFunctional, SystolicConv2d, SystolicLinear, quantize_bias

# Modules that hold no computation of their own (or only elementwise float
# work that needs no array): they stay as they are.
PASSTHROUGH = (
    nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.Identity, nn.Dropout, nn.Flatten,
    nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid, nn.GELU, nn.Tanh,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.BatchNorm2d, nn.BatchNorm1d,
)
# Compute layers pyvs does not map to the array: an error names them.
UNSUPPORTED = (
    nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.RNNBase, nn.MultiheadAttention, nn.Bilinear, nn.Embedding, nn.EmbeddingBag,
)


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def make_systolic(m: nn.Module, name: str, w_q: torch.Tensor, w_s: torch.Tensor,
                  bias_q: Optional[torch.Tensor], s_in: float, z_in: int, **kw) -> nn.Module:
    """The systolic twin of conv/linear module ``m`` (float or quantized),
    with its geometry and the given integer weights and input grid."""
    if hasattr(m, "kernel_size"):
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise ValueError(f"layer {name!r}: padding {m.padding!r} ({m.padding_mode}) is not supported")
        return SystolicConv2d(w_q, w_s, bias_q, s_in, z_in, stride=m.stride, padding=m.padding,
                              dilation=m.dilation, groups=m.groups, name=name, **kw)
    return SystolicLinear(w_q, w_s, bias_q, s_in, z_in, name=name, **kw)


def _qmodules():
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq
    convs = (nnq.Conv2d,)  # ConvReLU2d subclasses it
    linears = (nnq.Linear,)  # LinearReLU subclasses it
    relu_fused = (nniq.ConvReLU2d, nniq.LinearReLU)
    return nnq, convs, linears, relu_fused


def is_quantized_model(model: nn.Module) -> bool:
    """True if the model holds torch.ao quantized modules."""
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") or
               type(m).__module__.startswith("torch.ao.nn.intrinsic.quantized")
               for m in model.modules())


def _weight_parts(w: torch.Tensor):
    """int8 values and per-output-channel float32 scales of a quantized weight."""
    if w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        if w.q_zero_point() != 0:
            raise ValueError("pyvs supports symmetric weights only (zero point 0), got "
                             f"zero point {w.q_zero_point()}")
        scale = torch.full((w.shape[0],), w.q_scale(), dtype=torch.float32)
    else:
        if w.q_per_channel_axis() != 0 or bool((w.q_per_channel_zero_points() != 0).any()):
            raise ValueError("pyvs supports symmetric per-output-channel weights only")
        scale = w.q_per_channel_scales().to(torch.float32)
    return w.int_repr().to(torch.int8), scale


def from_quantized(qmodel: nn.Module, example_input: Optional[torch.Tensor] = None,
                   acc_bits: int = 32, allow_float: bool = False) -> nn.Module:
    """A float-in, float-out copy of a torch.ao int8 model whose quantized
    conv/linear layers run on the systolic array with the imported integer
    weights, scales, zero points and int32 biases.

    Each layer's input quantization parameters are those of the quantized
    tensor it receives, read in one forward pass of ``example_input`` (float
    [1, 3, 224, 224] by default). Quantize stubs become :class:`FakeQuant`,
    QFunctional ops :class:`QuantFunctional`, DeQuantize an identity."""
    nnq, convs, linears, relu_fused = _qmodules()
    qmodel = qmodel.eval()
    if example_input is None:
        example_input = torch.zeros(1, 3, 224, 224)
    inputs: Dict[str, tuple] = {}
    add_inputs: Dict[str, tuple] = {}
    hooks, patched = [], []
    for name, m in qmodel.named_modules():
        if isinstance(m, convs + linears):
            def hook(mod, args, name=name):
                x = args[0]
                inputs[name] = (x.q_scale(), x.q_zero_point(), x.dtype)
            hooks.append(m.register_forward_pre_hook(hook))
        elif isinstance(m, nnq.QFunctional):
            # Record the input grids of its adds (a method, not a forward).
            for op in ("add", "add_relu"):
                def wrapped(a, b, name=name, orig=getattr(m, op)):
                    add_inputs[name] = ((a.q_scale(), a.q_zero_point()), (b.q_scale(), b.q_zero_point()))
                    return orig(a, b)
                setattr(m, op, wrapped)
                patched.append((m, op))
    try:
        with torch.no_grad():
            qmodel(example_input)
    finally:
        for h in hooks:
            h.remove()
        for m, op in patched:
            delattr(m, op)  # back to the class's method

    model = copy.deepcopy(qmodel)
    for name, m in list(model.named_modules()):
        if not name:
            continue
        if isinstance(m, convs + linears):
            if name not in inputs:
                raise ValueError(f"layer {name!r} was not reached by the example input")
            s_in, z_in, dt = inputs[name]
            in_dtype = {torch.quint8: "uint8", torch.qint8: "int8"}[dt]
            w_q, w_s = _weight_parts(m.weight())
            bias = m.bias()
            bias_q = None if bias is None else quantize_bias(bias, s_in, w_s)
            _set_module(model, name, make_systolic(
                m, name, w_q, w_s, bias_q, s_in, z_in, in_dtype=in_dtype, out_scale=m.scale,
                out_zero_point=m.zero_point, out_relu=isinstance(m, relu_fused), acc_bits=acc_bits))
        elif isinstance(m, nnq.Quantize):
            dt = {torch.quint8: "uint8", torch.qint8: "int8"}[m.dtype]
            _set_module(model, name, FakeQuant(float(m.scale), int(m.zero_point), dt))
        elif isinstance(m, nnq.DeQuantize):
            _set_module(model, name, nn.Identity())
        elif isinstance(m, nnq.QFunctional):
            _set_module(model, name, QuantFunctional(m.scale, m.zero_point, add_inputs.get(name)))
        elif isinstance(m, nnq.Dropout):
            _set_module(model, name, nn.Identity())
    _check_left(model, allow_float)
    return model


def _check_left(model: nn.Module, allow_float: bool) -> None:
    """No quantized or unsupported compute layer may be left behind, unless
    the caller asked to keep them in float."""
    bad = []
    for name, m in model.named_modules():
        mod = type(m).__module__
        if mod.startswith("torch.ao.nn.quantized") or mod.startswith("torch.ao.nn.intrinsic"):
            if not name.endswith("_packed_params"):
                bad.append(f"{name} ({type(m).__name__})")
        elif isinstance(m, UNSUPPORTED) or (isinstance(m, (nn.Conv2d, nn.Linear)) and not allow_float):
            bad.append(f"{name} ({type(m).__name__})")
    if bad and not allow_float:
        raise ValueError("pyvs.convert: cannot map these layers to the systolic array: "
                         + ", ".join(bad) + ". Pass allow_float=True to leave them in float.")


def convert(model: nn.Module, calibration: Optional[Iterable[torch.Tensor]] = None, *,
            inplace: bool = False, acc_bits: int = 32, act_dtype: str = "uint8",
            allow_float: bool = False, example_input: Optional[torch.Tensor] = None,
            progress: bool = False) -> nn.Module:
    """Swaps every supported layer of ``model`` for a systolic one.

    - torch.ao int8 model: imported as is (:func:`from_quantized`; always a copy).
    - float model: BatchNorm folded, weights quantized per output channel to
      int8, every GEMM input's scale calibrated on ``calibration`` (an
      iterable of float input batches; required), see :mod:`pyvs.quantize`.

    Returns the converted model (a copy unless ``inplace``). Raises
    ValueError naming every layer it cannot map, unless ``allow_float``."""
    if is_quantized_model(model):
        return from_quantized(model, example_input, acc_bits, allow_float)
    from ..quantize import quantize_float_model
    if calibration is None:
        raise ValueError("pyvs.convert: a float model needs calibration data "
                         "(an iterable of input batches) to set activation scales")
    return quantize_float_model(model if inplace else copy.deepcopy(model), calibration,
                                acc_bits=acc_bits, act_dtype=act_dtype, allow_float=allow_float,
                                progress=progress)
