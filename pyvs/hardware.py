"""The simulated accelerator: :class:`ArrayConfig`, the one description of
the hardware every step uses (the timing model's clock and nominal supply,
the op's tile height, the latency and energy models' array), and every
hardware default, in one place.

The defaults are the seed paper's: a 256 x 256 weight-stationary array at
0.7 GHz (TPU v1's clock), designed for a 0.9 V supply, 32-bit accumulators.
The C++ op's schema repeats ``rows=256`` (``csrc/systolic_matmul.cpp``);
a test checks that the two agree.
"""
from __future__ import annotations

import dataclasses
import math

ROWS = 256         # PEs per column: MACs per K-tile of a partial sum
COLS = 256         # PEs per row
CLOCK_GHZ = 0.7    # GHz
V_NOMINAL = 0.9    # V: the supply the design is signed off at, and the energy baseline
ACC_BITS = 32      # accumulator width, bits
DATAFLOWS = ("ws", "os")  # weight-stationary (the default, TPU v1's), output-stationary
# What a detected timing error does: Razor replays the MAC (a stall), or
# TE-Drop skips its update (no stall; ThUnderVolt, Zhang et al., DAC 2018).
ON_ERRORS = ("replay", "drop")


@dataclasses.dataclass(frozen=True)
class ArrayConfig:
    """An R x C systolic array.

    Attributes:
        dataflow: 'ws' (weight-stationary, the default): each PE holds a
            weight; activations stream along the rows and partial sums down
            the columns, so a partial sum accumulates one K-tile of R MACs
            and the tiles add up below the array. 'os' (output-stationary):
            each PE holds one output's accumulator; activations and weights
            stream past it, and it adds one product per cycle over the
            whole K in one W-bit register.
        rows, cols: PEs (R, C); under 'ws' rows is also the op's K-tile height.
        freq_ghz: the clock, GHz.
        v_nominal: the nominal supply, V: where the timing model's clock is
            calibrated (the worst path plus the guard-band fills one period
            at the design clock) and against which energy savings are counted.
        replay_cycles: cycles the array stalls for one Razor replay.
        overlap_weight_load: double-buffered tiles: the weight loads ('ws') or
            the output drains ('os') are hidden.
        batch: images sharing each weight load in the latency and energy
            models (1: single-image latency).
        dvfs_switch_ns: how long the array waits for its supply to settle
            at each change of voltage between layers (per-layer schedules,
            :mod:`pyvs.schedule`), ns: 20 (on-chip switching regulators
            change their output in tens of ns, off-chip ones in tens of us:
            W. Kim, M. Gupta, G.-Y. Wei, D. Brooks, HPCA 2008). 0: free.
    """

    dataflow: str = "ws"
    rows: int = ROWS
    cols: int = COLS
    freq_ghz: float = CLOCK_GHZ
    v_nominal: float = V_NOMINAL
    replay_cycles: int = 1
    overlap_weight_load: bool = False
    batch: int = 1
    dvfs_switch_ns: float = 20.0

    def __post_init__(self):
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"ArrayConfig.dataflow must be one of {', '.join(DATAFLOWS)}, got {self.dataflow!r}")
        for name in ("rows", "cols", "replay_cycles", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ArrayConfig.{name} must be an integer, got {value!r}")
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"array must have at least 1 x 1 PEs, got {self.rows} x {self.cols}")
        for name in ("freq_ghz", "v_nominal"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value > 0):
                raise ValueError(f"ArrayConfig.{name} must be a positive number, got {value!r}")
        if self.replay_cycles < 0:
            raise ValueError(f"replay_cycles must be >= 0, got {self.replay_cycles}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        value = self.dvfs_switch_ns
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
            raise ValueError(f"ArrayConfig.dvfs_switch_ns must be a number of ns >= 0, got {value!r}")

    def tile_rows(self, k: int) -> int:
        """MACs per partial sum for a reduction of length k: the array's
        height under 'ws', the whole k under 'os' (one accumulation)."""
        return self.rows if self.dataflow == "ws" else max(int(k), 1)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


__all__ = ["ArrayConfig", "ROWS", "COLS", "CLOCK_GHZ", "V_NOMINAL", "ACC_BITS", "DATAFLOWS", "ON_ERRORS"]
