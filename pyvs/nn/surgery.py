"""Model surgery shared by both ways into the array (the int8 import in
:mod:`pyvs.nn.convert`, post-training quantization in :mod:`pyvs.nn.ptq`):
building a layer's systolic twin, swapping modules, and refusing to leave
an unmapped compute layer behind."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .layers import SystolicConv2d, SystolicLinear

# Compute layers pyvs does not map to the array: an error names them.
UNSUPPORTED = (
    nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.RNNBase, nn.MultiheadAttention, nn.Bilinear, nn.Embedding, nn.EmbeddingBag,
)


def set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Replaces the submodule at qualified ``name`` by ``new``."""
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


def unmapped_layers(model: nn.Module, allow_float: bool = False) -> list:
    """'name (Type)' of every compute layer that is not on the array: torch.ao
    quantized modules, layer kinds pyvs does not map, and (unless
    ``allow_float``) float Conv2d/Linear."""
    bad = []
    for name, m in model.named_modules():
        mod = type(m).__module__
        quantized = mod.startswith("torch.ao.nn.quantized") or mod.startswith("torch.ao.nn.intrinsic")
        if quantized and name.endswith("_packed_params"):
            continue
        if quantized or isinstance(m, UNSUPPORTED) or (
                isinstance(m, (nn.Conv2d, nn.Linear)) and not allow_float):
            bad.append(f"{name} ({type(m).__name__})")
    return bad


def check_mapped(model: nn.Module, allow_float: bool, float_layers_ok: bool = False) -> None:
    """A ValueError naming every compute layer left off the array, unless the
    caller asked to keep them in float. ``float_layers_ok``: check only for
    layer kinds that no quantization maps (before quantizing)."""
    if allow_float:
        return
    bad = unmapped_layers(model, float_layers_ok)
    if bad:
        raise ValueError("pyvs.convert: cannot map these layers to the systolic array: "
                         + ", ".join(bad) + ". Pass allow_float=True to leave them in float.")
