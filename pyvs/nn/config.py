"""Fault settings of the systolic layers: one small object, set for a whole
model or per layer (:func:`pyvs.nn.set_faults`). Imports nothing from
:mod:`pyvs.nn`."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ..accumulator import check_mask, check_width
from ..checks import integer
from ..hardware import DATAFLOWS, ON_ERRORS, ROWS
from ..ops import IMPLS, seed64


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
        rows: systolic array height, MACs per K-tile under 'ws' (default
            256). An experiment sets it from its
            :class:`pyvs.hardware.ArrayConfig`, as it does
        dataflow: 'ws' (a partial sum accumulates a K-tile of ``rows``
            MACs) or 'os' (one accumulation over the whole K, in one W-bit
            register); see :class:`pyvs.hardware.ArrayConfig`.
        impl: how the op computes it, never what ("auto", "fast" or
            "simple"; see :func:`pyvs.ops.systolic_matmul`).
        on_error: what a detected error (a protected bit that errs) does:
            'replay' (default; Razor replays the MAC, a stall) or 'drop'
            (TE-Drop: the MAC's update is skipped, no stall).
        patterns, joint: conditioned injection (both or neither): int64 [P]
            masks of erring bits and float64 [W + 1, P], P(pattern j |
            signature L) (:func:`pyvs.ops.systolic_matmul`,
            :meth:`pyvs.timing.LayerTiming.joint_tables`); the op then draws
            the errors from them, and p_bits only says what their per-bit
            rates are (W, reports).
    """

    p_bits: Optional[torch.Tensor] = None
    protect: int = 0
    seed: int = 0
    rows: int = ROWS
    impl: str = "auto"
    dataflow: str = "ws"
    on_error: str = "replay"
    patterns: Optional[torch.Tensor] = None
    joint: Optional[torch.Tensor] = None

    def __post_init__(self):
        if (self.patterns is None) != (self.joint is None):
            raise ValueError("FaultConfig: patterns and joint go together (conditioned injection)")
        if self.joint is not None and (self.p_bits is None or not isinstance(self.joint, torch.Tensor)
                                       or self.joint.dim() != 2 or self.joint.shape[0] != len(self.p_bits) + 1):
            raise ValueError("FaultConfig: conditioned injection needs p_bits [W] (their per-bit rates) and "
                             "joint [W + 1, P]")
        if self.p_bits is not None:
            self.p_bits = _check_p_bits(self.p_bits)
            self.protect = check_mask(self.protect, self.p_bits.numel(), "FaultConfig: protect")
        else:
            self.protect = integer(self.protect, "FaultConfig: protect", 0)
        seed64(self.seed)
        self.seed = integer(self.seed, "FaultConfig: seed")
        self.rows = integer(self.rows, "FaultConfig: rows", 1)
        if self.impl not in IMPLS:
            raise ValueError(f"FaultConfig: impl must be 'auto', 'fast' or 'simple', got {self.impl!r}")
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"FaultConfig: dataflow must be one of {', '.join(DATAFLOWS)}, got {self.dataflow!r}")
        if self.on_error not in ON_ERRORS:
            raise ValueError(f"FaultConfig: on_error must be one of {', '.join(ON_ERRORS)}, got {self.on_error!r}")

    def tile_rows(self, k: int) -> int:
        """MACs per partial sum for a reduction of length k (the op's rows)."""
        return self.rows if self.dataflow == "ws" else max(int(k), 1)

    @property
    def acc_bits(self) -> Optional[int]:
        """W, the accumulator width the table is for (None without a table)."""
        return None if self.p_bits is None else self.p_bits.numel()


def _check_p_bits(p_bits) -> torch.Tensor:
    """p_bits as a CPU float64 [W] tensor of probabilities, W = 8..32."""
    try:
        p = torch.as_tensor(p_bits, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"FaultConfig: p_bits must be a 1-D sequence of probabilities, "
                         f"got {type(p_bits).__name__}") from None
    if p.dim() != 1:
        raise ValueError(f"FaultConfig: p_bits must be 1-D [W], one probability per accumulator "
                         f"bit, got shape {tuple(p.shape)}")
    check_width(p.numel(), "FaultConfig: len(p_bits)")
    bad = ~(torch.isfinite(p) & (p >= 0) & (p <= 1))
    if bad.any():
        b = int(bad.nonzero()[0])
        raise ValueError(f"FaultConfig: p_bits[{b}] = {float(p[b])} is not a probability in [0, 1]")
    return p
