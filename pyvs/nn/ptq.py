"""Post-training int8 quantization of a float model onto systolic layers.

Method (every choice stated, none tuned on the evaluation images):
1. BatchNorm folding: each BatchNorm2d that directly follows a Conv2d (found
   by torch.fx tracing, or in nn.Sequential order when the model does not
   trace) is folded into the conv's weight and bias (eval statistics).
2. Weights: symmetric int8 per output channel, s_w[n] = max|w[n]| / 127,
   q = clamp(round(w / s_w), -127, 127).
3. Activations: per-tensor, one scale per GEMM input, calibrated by the
   min/max of that input over the calibration batches (range widened to
   include 0, so that 0 and zero padding are exact). uint8: s = (max - min)
   / 255, z = round(-min / s); int8: symmetric, s = max(|min|, |max|) / 127.
4. Bias: int32 on the accumulator's scale, round(b * (1 / (s_in * s_w[n]))).
Layer outputs stay float (dequantized accumulators); the next GEMM quantizes
its own input.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Tuple

import torch
from torch import nn
from tqdm import tqdm

from ..accumulator import check_width
from ..hardware import ACC_BITS
from .int8 import check_dtype, quantize_bias
from .surgery import check_mapped, make_systolic, set_module


def _conv_bn_pairs(model: nn.Module) -> List[Tuple[str, str]]:
    try:
        import torch.fx
        gm = torch.fx.symbolic_trace(model)
        mods = dict(gm.named_modules())
        pairs = []
        for node in gm.graph.nodes:
            if node.op == "call_module" and isinstance(mods.get(node.target), nn.BatchNorm2d):
                src = node.args[0]
                if (isinstance(src, torch.fx.Node) and src.op == "call_module"
                        and isinstance(mods.get(src.target), nn.Conv2d) and len(src.users) == 1):
                    pairs.append((src.target, node.target))
        return pairs
    except Exception:  # not traceable: consecutive children of Sequentials
        pairs = []
        for name, m in model.named_modules():
            if isinstance(m, nn.Sequential):
                kids = list(m.named_children())
                for (n1, a), (n2, b) in zip(kids, kids[1:]):
                    if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                        prefix = f"{name}." if name else ""
                        pairs.append((prefix + n1, prefix + n2))
        return pairs


def fold_batchnorm(model: nn.Module) -> int:
    """Folds every Conv2d -> BatchNorm2d pair in place; returns how many."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    model.eval()
    pairs = _conv_bn_pairs(model)
    for conv_name, bn_name in pairs:
        fused = fuse_conv_bn_eval(model.get_submodule(conv_name), model.get_submodule(bn_name))
        set_module(model, conv_name, fused)
        set_module(model, bn_name, nn.Identity())
    return len(pairs)


def quantize_weight(w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: (q int8 like w, scale float32 [Cout])."""
    w = w.detach().float()
    amax = w.reshape(w.shape[0], -1).abs().amax(1)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.round(w / scale.reshape(-1, *([1] * (w.dim() - 1)))).clamp(-127, 127)
    return q.to(torch.int8), scale


def activation_qparams(lo: float, hi: float, dtype: str = "uint8") -> Tuple[float, int]:
    """(scale, zero point) covering [lo, hi] and 0."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if dtype == "uint8":
        scale = (hi - lo) / 255.0 or 1.0
        return scale, int(min(255, max(0, round(-lo / scale))))
    if dtype == "int8":
        return (max(-lo, hi) / 127.0) or 1.0, 0
    raise ValueError(f"activation dtype must be 'uint8' or 'int8', got {dtype!r}")


def calibrate(model: nn.Module, calibration: Iterable[torch.Tensor], progress: bool = False
              ) -> Tuple[Dict[str, Tuple[float, float]], int]:
    """Min and max of the input of every Conv2d/Linear over the calibration
    batches (float tensors). Returns ({name: (min, max)}, images seen)."""
    ranges: Dict[str, List[float]] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            def hook(mod, args, name=name):
                x = args[0].detach()
                lo, hi = float(x.min()), float(x.max())
                r = ranges.setdefault(name, [lo, hi])
                r[0], r[1] = min(r[0], lo), max(r[1], hi)
            hooks.append(m.register_forward_pre_hook(hook))
    seen = 0
    try:
        with torch.no_grad():
            for batch in tqdm(calibration, desc="calibrating", disable=not progress, leave=False):
                if isinstance(batch, (list, tuple)):
                    batch = batch[0]
                model(batch)
                seen += batch.shape[0]
    finally:
        for h in hooks:
            h.remove()
    if seen == 0:
        raise ValueError("calibration needs at least one image; the calibration data was empty")
    return {k: (v[0], v[1]) for k, v in ranges.items()}, seen


def quantize_float_model(model: nn.Module, calibration: Iterable[torch.Tensor], *, acc_bits: int = ACC_BITS,
                         act_dtype: str = "uint8", allow_float: bool = False,
                         progress: bool = False) -> nn.Module:
    """Quantizes ``model`` in place (see the module docstring) and returns it
    with every Conv2d/Linear replaced by a systolic layer."""
    check_mapped(model, allow_float, float_layers_ok=True)
    check_dtype(act_dtype)
    acc_bits = check_width(acc_bits)
    _check_finite(model)
    model.eval()
    fold_batchnorm(model)
    ranges, _ = calibrate(model, calibration, progress)
    for name, m in list(model.named_modules()):
        if not isinstance(m, (nn.Conv2d, nn.Linear)) or name not in ranges:
            continue
        if not all(math.isfinite(x) for x in ranges[name]):
            raise ValueError(f"pyvs.convert: the calibration inputs of layer {name!r} are not finite "
                             f"(min {ranges[name][0]}, max {ranges[name][1]})")
        s_in, z_in = activation_qparams(*ranges[name], act_dtype)
        w_q, w_s = quantize_weight(m.weight)
        bias_q = None if m.bias is None else quantize_bias(m.bias, s_in, w_s)
        set_module(model, name, make_systolic(m, name, w_q, w_s, bias_q, s_in, z_in,
                                              in_dtype=act_dtype, acc_bits=acc_bits))
    check_mapped(model, allow_float)
    return model


def _check_finite(model: nn.Module) -> None:
    """A NaN or infinite parameter or buffer would quantize to finite
    integers and hide what the float model shows: refuse it."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"pyvs.convert: {name} holds NaN or infinite values; the float model "
                             "computes NaN, and its int8 twin would not")


__all__ = ["fold_batchnorm", "quantize_weight", "activation_qparams", "calibrate",
           "quantize_float_model"]
