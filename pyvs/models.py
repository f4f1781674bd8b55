"""Loading the networks pyvs studies: torchvision's int8 MobileNetV2 (the
paper's network) and float torchvision CNNs, from a local weights file or,
where the machine can download, torchvision's own weights."""
from __future__ import annotations

import os
import warnings
from typing import Optional

import torch
import torchvision
from torch import nn


def _load_state_dict(model: nn.Module, path: str, what: str) -> nn.Module:
    """Loads a state_dict file (tensors only: no code in the file is run)."""
    if not os.path.isfile(path):
        raise ValueError(f"weights file {path!r} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch 2.14 deprecates quantized tensors and TypedStorage
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean "not a weights file"
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(f"weights file {path!r} is not a PyTorch state_dict file ({first})") from None
    if not isinstance(state, dict):
        raise ValueError(f"weights file {path!r} holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as e:
        first = str(e).splitlines()[0]
        raise ValueError(f"weights file {path!r} does not match the {what} architecture: {first}") from None
    return model.eval()


def mobilenet_v2_int8(weights: Optional[str] = None) -> nn.Module:
    """torchvision's quantized MobileNetV2 (qnnpack engine), eval mode, from a
    state_dict file, or else torchvision's IMAGENET1K_QNNPACK_V1 download."""
    from torchvision.models.quantization import MobileNet_V2_QuantizedWeights, mobilenet_v2
    torch.backends.quantized.engine = "qnnpack"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.14 deprecates its quantized tensor types
        if weights:
            return _load_state_dict(mobilenet_v2(weights=None, quantize=True), weights, "int8 MobileNetV2")
        try:
            return mobilenet_v2(weights=MobileNet_V2_QuantizedWeights.IMAGENET1K_QNNPACK_V1,
                                quantize=True).eval()
        except Exception as e:
            raise ValueError(
                "no weights file was given and torchvision's int8 MobileNetV2 weights could not be "
                f"downloaded ({type(e).__name__}). Pass --weights PATH to a state_dict of "
                "torchvision.models.quantization.mobilenet_v2(quantize=True), e.g. "
                "mobilenet_v2_int8_qnnpack_state_dict.pth from the shared data folder.") from None


def float_model(arch: str, weights: Optional[str] = None, pretrained: bool = False) -> nn.Module:
    """A float torchvision classifier by name (e.g. 'mobilenet_v2', 'resnet18'):
    weights from a file, torchvision's default weights (pretrained=True, needs
    a download), or random."""
    try:
        builder = torchvision.models.get_model_builder(arch)
    except ValueError:
        raise ValueError(f"unknown torchvision model {arch!r}") from None
    if weights:
        return _load_state_dict(builder(weights=None), weights, arch)
    if pretrained:
        try:
            return builder(weights="DEFAULT").eval()
        except Exception as e:
            raise ValueError(f"torchvision's weights for {arch!r} could not be downloaded "
                             f"({type(e).__name__}); pass a weights file instead") from None
    return builder(weights=None).eval()


def gemm_shapes(model: nn.Module, example_input: torch.Tensor) -> list:
    """(layer name, (groups, M, K, N per group)) of every Conv2d and Linear of
    a float model on ``example_input`` (float [B, 3, H, W]): the GEMMs pyvs
    lowers them to (im2col, one [G, M, K] x [G, K, N] GEMM per layer; M
    counts the rows of the whole batch)."""
    shapes, hooks = [], []

    def hook(name):
        def record(mod, inp, out):
            if isinstance(mod, nn.Conv2d):
                g = mod.groups
                k = mod.in_channels // g * mod.kernel_size[0] * mod.kernel_size[1]
                shapes.append((name, (g, out.shape[0] * out.shape[2] * out.shape[3], k, mod.out_channels // g)))
            else:
                shapes.append((name, (1, out.numel() // out.shape[-1], mod.in_features, mod.out_features)))
        return record

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            hooks.append(mod.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model.eval()(example_input)
    finally:
        for h in hooks:
            h.remove()
    return shapes
