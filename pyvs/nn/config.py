"""Fault settings of the systolic layers: one small object, set for a whole
model or per layer."""
from __future__ import annotations

import dataclasses
import zlib
from typing import Dict, Optional, Union

import torch


@dataclasses.dataclass
class FaultConfig:
    """What the simulated array does wrong, and what it protects.

    Attributes:
        p_bits: float64 [W], per-MAC error probability of each accumulator
            bit (LSB first), e.g. a row of :func:`pyvs.timing.error_probabilities`;
            None means no errors. W must equal the layer's accumulator width.
        protect: bit mask of the accumulator bits with Razor correction.
        seed: 64-bit seed; with the layer's stream id and the global row it
            fixes every event.
        rows: systolic array height, MACs per K-tile (default 256).
        impl: how the op computes it, never what ("auto", "fast" or
            "simple"; see :func:`pyvs.ops.systolic_matmul`).
    """

    p_bits: Optional[torch.Tensor] = None
    protect: int = 0
    seed: int = 0
    rows: int = 256
    impl: str = "auto"

    def __post_init__(self):
        if self.p_bits is not None:
            p = torch.as_tensor(self.p_bits, dtype=torch.float64).detach().cpu().reshape(-1)
            if not 8 <= p.numel() <= 32:
                raise ValueError(f"FaultConfig: p_bits has {p.numel()} entries; the accumulator "
                                 "width must be 8 to 32 bits")
            bad = ~(torch.isfinite(p) & (p >= 0) & (p <= 1))
            if bad.any():
                b = int(bad.nonzero()[0])
                raise ValueError(f"FaultConfig: p_bits[{b}] = {float(p[b])} is not a probability in [0, 1]")
            self.p_bits = p
        if self.protect < 0:
            raise ValueError(f"FaultConfig: protect must be a non-negative bit mask, got {self.protect}")
        if self.p_bits is not None and self.protect >> self.p_bits.numel():
            raise ValueError(f"FaultConfig: protect mask {self.protect:#x} is wider than the "
                             f"{self.p_bits.numel()}-bit accumulator")
        if self.rows < 1:
            raise ValueError(f"FaultConfig: rows must be >= 1, got {self.rows}")
        if self.impl not in ("auto", "fast", "simple"):
            raise ValueError(f"FaultConfig: impl must be 'auto', 'fast' or 'simple', got {self.impl!r}")

    @property
    def active(self) -> bool:
        return self.p_bits is not None and bool((self.p_bits > 0).any())


def stream_id(qualified_name: str) -> int:
    """A layer's random stream id: CRC-32 of its qualified module name, so it
    depends on nothing but the name (not on the order layers are visited)."""
    return zlib.crc32(qualified_name.encode()) & 0xFFFFFFFF


def systolic_layers(model: torch.nn.Module):
    """(qualified name, layer) for every systolic layer of a model."""
    from .layers import SystolicLayer
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SystolicLayer)]


def set_faults(model: torch.nn.Module, config: Union[FaultConfig, Dict[str, FaultConfig], None]) -> None:
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
    else:
        for layer in layers.values():
            layer.set_fault(config)


def set_image_offset(model: torch.nn.Module, offset: int) -> None:
    """Global index of the next batch's first image: makes the events of an
    image independent of how the images were batched."""
    for _, layer in systolic_layers(model):
        layer.image_offset = int(offset)


def reset_stats(model: torch.nn.Module) -> None:
    for _, layer in systolic_layers(model):
        layer.stats.zero_()


def fault_stats(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """Per layer: int64 [2, W], injected (row 0) and corrected (row 1) counts per bit."""
    return {n: layer.stats.clone() for n, layer in systolic_layers(model)}


def total_stats(model: torch.nn.Module) -> torch.Tensor:
    """Sum over layers of :func:`fault_stats`, int64 [2, W] (W of the first layer)."""
    stats = [s for s in fault_stats(model).values()]
    if not stats:
        return torch.zeros(2, 32, dtype=torch.int64)
    return torch.stack([s for s in stats if s.shape == stats[0].shape]).sum(0)
