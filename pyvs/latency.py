"""Cycle counts of an R x C systolic array, weight-stationary (the default)
or output-stationary (:func:`gemm_cycles`), and the latency of Razor
replays.

The array (:class:`pyvs.hardware.ArrayConfig`; TPU v1-like, default 256 x
256 at 0.7 GHz) holds a R x C tile of
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
- output-stationary (``ArrayConfig(dataflow='os')``): each PE holds one
  output; a tile of R output rows by C output columns streams its K
  products (one k per cycle, activations from the left, weights from the
  top), fills and drains (R + C - 2), and shifts its outputs out (R cycles
  unless double-buffered); groups never share a tile, since a row carries
  one activation stream (a depthwise conv fills one column of C);
- ``batch`` images share each weight load: a tile streams batch * M rows,
  and the per-image cycles are the batch's cycles / batch (batch 1, the
  default, is single-image latency);
- a Razor replay (one corrected timing error) stalls the whole array for
  ``replay_cycles`` cycles (default 1: the error is detected at the clock edge,
  the shadow latch's correct value is restored while the pipeline is held
  for one cycle, as in Razor's global clock-gating recovery, Ernst et al.,
  MICRO 2003).
- errors in the same array cycle share that cycle's stall: the R x C PEs
  are held together, and one replay restores every shadow latch that
  flagged. With a layer's errors independent and spread evenly over its
  cycles (lambda = errors / base cycles per cycle, Poisson), the expected
  stalls are base * (1 - exp(-lambda)): the results use this count. One
  stall per error, the first pyvs's count, is kept beside it as an upper
  bound (``coalesce=False``); the two agree while lambda << 1 and part
  where errors are common (measured on MobileNetV2 with the event model,
  1000 images: 158 errors per image at 0.52 V cost 0.3 % fewer stalls than
  the bound; at 0.51 V 83 % of the 2.0e5 errors per image fall in the 1x1
  projection layers, and the overhead is 17 % against the bound's 46 %).

Latency overhead = stall cycles / base cycles, per layer and per inference.
"""
from __future__ import annotations

import math
from typing import Dict, Tuple

from .hardware import ArrayConfig


def tiles(M: int, K: int, N: int, groups: int = 1, array: ArrayConfig = ArrayConfig()) -> int:
    """How many array tiles one GEMM ([M, K] x [K, N] per group, ``groups``
    groups) takes. 'ws': ceil(K / R) * ceil(N / C) weight tiles per group,
    small groups packed block-diagonally, g_pack = min(R // K, C // N) per
    tile. 'os': ceil(M / R) * ceil(N / C) output tiles per group; a row
    carries one activation stream, so groups never share a tile (a
    depthwise conv, N = 1, fills one column of C)."""
    R, C = array.rows, array.cols
    if min(M, K, N, groups) < 0:
        raise ValueError("GEMM sizes must be non-negative")
    if M == 0 or K == 0 or N == 0 or groups == 0:
        return 0
    if array.dataflow == "os":
        return groups * math.ceil(M / R) * math.ceil(N / C)
    pack = max(1, min(R // K, C // N)) if (K <= R and N <= C) else 1
    return math.ceil(groups / pack) * math.ceil(K / R) * math.ceil(N / C)


def gemm_cycles(M: int, K: int, N: int, groups: int = 1, array: ArrayConfig = ArrayConfig()) -> int:
    """Cycles of one GEMM ([M, K] x [K, N], per group, ``groups`` groups) on
    the array. 'ws': a tile loads its weights (R cycles, hidden when
    ``overlap_weight_load``), streams the M activation rows, and fills and
    drains (R + C - 2). 'os': a tile streams the K products of its outputs,
    fills and drains (R + C - 2), and shifts its outputs out (R cycles,
    hidden when double-buffered: ``overlap_weight_load``)."""
    R, C = array.rows, array.cols
    n = tiles(M, K, N, groups, array)
    hidden = 0 if array.overlap_weight_load else R
    stream = K if array.dataflow == "os" else M
    return n * (hidden + stream + R + C - 2)


def model_cycles(shapes: Dict[str, Tuple[int, int, int, int]], array: ArrayConfig = ArrayConfig()
                 ) -> Dict[str, float]:
    """Base cycles per layer per image: shapes maps layer name to
    (groups, M per image, K, N per group); a batch of ``array.batch`` images
    shares each weight load."""
    return {name: gemm_cycles(M * array.batch, K, N, G, array) / array.batch
            for name, (G, M, K, N) in shapes.items()}


def stalls(base_cycles: float, errors: float, coalesce: bool = True) -> float:
    """Expected stalls of a layer of ``base_cycles`` cycles with ``errors``
    corrected errors: base * (1 - exp(-errors / base)) when errors of one
    cycle share its stall, else one per error (the upper bound)."""
    if not coalesce or errors <= 0:
        return max(errors, 0.0)
    if base_cycles <= 0:
        return errors  # errors without cycles: nothing to share
    return base_cycles * -math.expm1(-errors / base_cycles)


def stall_cycles(base_cycles: Dict[str, float], corrected_per_image: Dict[str, float],
                 array: ArrayConfig = ArrayConfig(), coalesce: bool = True) -> Dict[str, float]:
    """Replay cycles per layer per image: stalls x replay_cycles."""
    return {name: stalls(base, corrected_per_image.get(name, 0.0), coalesce) * array.replay_cycles
            for name, base in base_cycles.items()}


def latency_overhead(base_cycles: Dict[str, float], corrected_per_image: Dict[str, float],
                     array: ArrayConfig = ArrayConfig(), coalesce: bool = True):
    """(overhead per layer, overhead per inference), fractions: stall cycles
    (see :func:`stalls`) over base cycles."""
    unknown = sorted(set(corrected_per_image) - set(base_cycles))
    if unknown:
        raise ValueError(f"corrected errors of layers the workload does not have: {unknown[:3]}")
    replay = stall_cycles(base_cycles, corrected_per_image, array, coalesce)
    per_layer = {name: (replay[name] / base if base else 0.0) for name, base in base_cycles.items()}
    total_base = sum(base_cycles.values())
    return per_layer, (sum(replay.values()) / total_base if total_base else 0.0)
