"""Cycle counts of a weight-stationary R x C systolic array, and the latency
of Razor replays.

The array (TPU v1-like, default 256 x 256 at 0.7 GHz) holds a R x C tile of
weights; activation rows stream in from the left, partial sums flow down the
R rows, and each column's result leaves at the bottom. One GEMM of M rows,
reduction length K and N columns (per group) is run tile by tile:

- tiles: ceil(K / R) * ceil(N / C) per group; small groups (depthwise and
  grouped convs) are packed block-diagonally, g_pack = max(1, min(R // K,
  C // N)) groups per tile;
- one tile costs R cycles to load its weights (a row per cycle, not
  overlapped with compute unless ``overlap_weight_load``), M cycles to stream
  the activation rows, and R + C - 2 cycles of fill and drain (the skew of the
  wavefront across rows and columns);
- ``batch`` images share each weight load: a tile streams batch * M rows,
  and the per-image cycles are the batch's cycles / batch (batch 1, the
  default, is single-image latency);
- a Razor replay (one corrected timing error) stalls the whole array for
  ``replay_cycles`` cycles (default 1: the error is detected at the clock edge,
  the shadow latch's correct value is restored while the pipeline is held
  for one cycle, as in Razor's global clock-gating recovery, Ernst et al.,
  MICRO 2003). Errors are not assumed to coalesce: an upper bound.

Latency overhead = replay cycles / base cycles, per layer and per inference.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Tuple


@dataclasses.dataclass(frozen=True)
class ArrayConfig:
    """rows R, cols C (PEs); freq_ghz (GHz); replay_cycles (cycles per
    corrected error); overlap_weight_load (double-buffered weights); batch
    (images per weight load)."""

    rows: int = 256
    cols: int = 256
    freq_ghz: float = 0.7
    replay_cycles: int = 1
    overlap_weight_load: bool = False
    batch: int = 1

    def __post_init__(self):
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"array must have at least 1 x 1 PEs, got {self.rows} x {self.cols}")
        if not self.freq_ghz > 0:
            raise ValueError(f"freq_ghz must be positive, got {self.freq_ghz}")
        if self.replay_cycles < 0:
            raise ValueError(f"replay_cycles must be >= 0, got {self.replay_cycles}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")


def gemm_cycles(M: int, K: int, N: int, groups: int = 1, array: ArrayConfig = ArrayConfig()) -> int:
    """Cycles of one GEMM ([M, K] x [K, N], per group, ``groups`` groups) on the array."""
    R, C = array.rows, array.cols
    if min(M, K, N, groups) < 0:
        raise ValueError("GEMM sizes must be non-negative")
    if M == 0 or K == 0 or N == 0 or groups == 0:
        return 0
    pack = max(1, min(R // K, C // N)) if (K <= R and N <= C) else 1
    group_tiles = math.ceil(groups / pack)
    tiles = group_tiles * math.ceil(K / R) * math.ceil(N / C)
    load = 0 if array.overlap_weight_load else R
    return tiles * (load + M + R + C - 2)


def model_cycles(shapes: Dict[str, Tuple[int, int, int, int]], array: ArrayConfig = ArrayConfig()
                 ) -> Dict[str, float]:
    """Base cycles per layer per image: shapes maps layer name to
    (groups, M per image, K, N per group); a batch of ``array.batch`` images
    shares each weight load."""
    return {name: gemm_cycles(M * array.batch, K, N, G, array) / array.batch
            for name, (G, M, K, N) in shapes.items()}


def latency_overhead(base_cycles: Dict[str, int], corrected_per_image: Dict[str, float],
                     array: ArrayConfig = ArrayConfig()):
    """(overhead per layer, overhead per inference), fractions: replay cycles
    (corrected errors per image x replay_cycles) over base cycles."""
    per_layer = {}
    for name, base in base_cycles.items():
        replay = corrected_per_image.get(name, 0.0) * array.replay_cycles
        per_layer[name] = replay / base if base else 0.0
    total_base = sum(base_cycles.values())
    total_replay = sum(corrected_per_image.get(n, 0.0) for n in base_cycles) * array.replay_cycles
    return per_layer, (total_replay / total_base if total_base else 0.0)
