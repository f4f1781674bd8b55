"""Swap a model's conv and linear layers for systolic ones.

Two entry points, one per kind of model:

- an int8 model made by torch.ao (e.g. ``torchvision.models.quantization``):
  its integer weights, scales and zero points are imported as they are
  (:func:`from_quantized`); torch's quantized tensor types are read once,
  here, and never used at run time;
- a float model: post-training quantization (:mod:`pyvs.nn.ptq`) first.

:func:`convert` picks the right one.
"""
from __future__ import annotations

import copy
from typing import Dict, Iterable, Optional, Tuple

import torch
from torch import nn

from ..hardware import ACC_BITS
from .int8 import FakeQuant, QuantFunctional, RecordPools, pool_integers, quantize_bias
from .ptq import quantize_float_model
from .surgery import check_mapped, make_systolic, set_module

_DTYPE = {torch.quint8: "uint8", torch.qint8: "int8"}


def _qmodules():
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq
    compute = (nnq.Conv2d, nnq.Linear)  # ConvReLU2d and LinearReLU subclass them
    relu_fused = (nniq.ConvReLU2d, nniq.LinearReLU)
    return nnq, compute, relu_fused


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


def _input_grids(qmodel: nn.Module, example_input: torch.Tensor) -> Tuple[Dict[str, tuple], Dict[str, tuple], list]:
    """The grids of the quantized tensors the model's layers receive, read in
    one forward pass: {conv/linear name: (scale, zero point, dtype)},
    {QFunctional name: ((s_a, z_a), (s_b, z_b)) of its adds} and the grids of
    its average pools' inputs in call order."""
    nnq, compute, _ = _qmodules()
    inputs: Dict[str, tuple] = {}
    add_inputs: Dict[str, tuple] = {}
    hooks, patched = [], []
    for name, m in qmodel.named_modules():
        if isinstance(m, compute):
            def hook(mod, args, name=name):
                inputs[name] = (args[0].q_scale(), args[0].q_zero_point(), args[0].dtype)
            hooks.append(m.register_forward_pre_hook(hook))
        elif isinstance(m, nnq.QFunctional):
            # Its adds are methods, not forward: wrap them on the instance.
            for op in ("add", "add_relu"):
                def wrapped(a, b, name=name, orig=getattr(m, op)):
                    add_inputs[name] = ((a.q_scale(), a.q_zero_point()), (b.q_scale(), b.q_zero_point()))
                    return orig(a, b)
                setattr(m, op, wrapped)
                patched.append((m, op))
    pools = RecordPools()
    try:
        with torch.no_grad(), pools:
            qmodel(example_input)
    finally:
        for h in hooks:
            h.remove()
        for m, op in patched:
            delattr(m, op)  # back to the class's method
    return inputs, add_inputs, pools.grids


def _float_twin(name: str, m: nn.Module, inputs: dict, add_inputs: dict, acc_bits: int):
    """The float-in, float-out replacement of one torch.ao module, or None
    for a module that stays."""
    nnq, compute, relu_fused = _qmodules()
    if isinstance(m, compute):
        if name not in inputs:
            raise ValueError(f"layer {name!r} was not reached by the example input")
        s_in, z_in, dt = inputs[name]
        w_q, w_s = _weight_parts(m.weight())
        bias = m.bias()
        if bias is not None and not bool(torch.isfinite(bias).all()):
            raise ValueError(f"pyvs.convert: the bias of layer {name!r} holds NaN or infinite values")
        bias_q = None if bias is None else quantize_bias(bias, s_in, w_s)
        return make_systolic(m, name, w_q, w_s, bias_q, s_in, z_in, in_dtype=_DTYPE[dt],
                             out_scale=m.scale, out_zero_point=m.zero_point,
                             out_relu=isinstance(m, relu_fused), acc_bits=acc_bits)
    if isinstance(m, nnq.Quantize):
        return FakeQuant(float(m.scale), int(m.zero_point), _DTYPE[m.dtype])
    if isinstance(m, (nnq.DeQuantize, nnq.Dropout)):
        return nn.Identity()
    if isinstance(m, nnq.QFunctional):
        return QuantFunctional(m.scale, m.zero_point, add_inputs.get(name))
    return None


def from_quantized(qmodel: nn.Module, example_input: Optional[torch.Tensor] = None,
                   acc_bits: int = ACC_BITS, allow_float: bool = False) -> nn.Module:
    """A float-in, float-out copy of a torch.ao int8 model whose quantized
    conv/linear layers run on the systolic array with the imported integer
    weights, scales, zero points and int32 biases.

    Each layer's input quantization parameters are those of the quantized
    tensor it receives, read in one forward pass of ``example_input`` (float
    [1, 3, 224, 224] by default). Quantize stubs become :class:`FakeQuant`,
    QFunctional ops :class:`QuantFunctional`, DeQuantize an identity, and
    average pools of quantized tensors pool in integers as torch's do
    (:class:`pyvs.nn.int8.IntegerPools`)."""
    qmodel = qmodel.eval()
    example_input = torch.zeros(1, 3, 224, 224) if example_input is None else example_input
    inputs, add_inputs, pool_grids = _input_grids(qmodel, example_input)
    model = copy.deepcopy(qmodel)
    for name, m in list(model.named_modules()):
        twin = _float_twin(name, m, inputs, add_inputs, acc_bits) if name else None
        if twin is not None:
            set_module(model, name, twin)
    check_mapped(model, allow_float)
    if any(g is not None for g in pool_grids):
        pool_integers(model, pool_grids)
    return model


def convert(model: nn.Module, calibration: Optional[Iterable[torch.Tensor]] = None, *,
            inplace: bool = False, acc_bits: int = ACC_BITS, act_dtype: str = "uint8",
            allow_float: bool = False, example_input: Optional[torch.Tensor] = None,
            progress: bool = False) -> nn.Module:
    """Swaps every supported layer of ``model`` for a systolic one.

    - torch.ao int8 model: imported as is (:func:`from_quantized`; always a copy).
    - float model: BatchNorm folded, weights quantized per output channel to
      int8, every GEMM input's scale calibrated on ``calibration`` (an
      iterable of float input batches; required), see :mod:`pyvs.nn.ptq`.

    acc_bits: accumulator width W of every layer, bits (8..32).
    Returns the converted model (a copy unless ``inplace``). Raises
    ValueError naming every layer it cannot map, unless ``allow_float``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"pyvs.convert: model must be a torch.nn.Module, got {type(model).__name__}")
    if is_quantized_model(model):
        return from_quantized(model, example_input, acc_bits, allow_float)
    if calibration is None:
        raise ValueError("pyvs.convert: a float model needs calibration data "
                         "(an iterable of input batches) to set activation scales")
    return quantize_float_model(model if inplace else copy.deepcopy(model), calibration,
                                acc_bits=acc_bits, act_dtype=act_dtype, allow_float=allow_float,
                                progress=progress)
