"""Python face of the compiled ops: thin wrappers over ``torch.ops.pyvs.*``
and their fake kernels (so the ops trace under ``torch.compile``).

The fault model itself is specified once, in ``csrc/fault_model.h``; the readable
step-by-step version is :mod:`pyvs.reference`.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from . import _C  # noqa: F401  (loads the library and registers the ops)
from .accumulator import MAX_BITS, MIN_BITS
from .checks import integer
from .hardware import ROWS

__all__ = ["systolic_matmul", "as_p_bits", "IMPLS"]

IMPLS = ("auto", "fast", "simple")  # how the op computes, never what (see systolic_matmul)
_U64 = 1 << 64


def as_p_bits(p_bits: Union[torch.Tensor, Sequence[float]]) -> torch.Tensor:
    """Per-bit error probabilities as a float64 tensor [W] (W = accumulator
    width in bits, LSB first). Tensors keep their device; sequences go to CPU."""
    if isinstance(p_bits, torch.Tensor):
        return p_bits
    try:
        return torch.tensor(list(p_bits), dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"systolic_matmul: p_bits must be a float64 tensor [W] or a sequence of probabilities, "
                        f"got {type(p_bits).__name__}") from None


def seed64(seed: int) -> int:
    """A seed in [-2^63, 2^64) as the int64 with the same 64 bits."""
    seed = integer(seed, "seed")
    if not -(1 << 63) <= seed < _U64:
        raise ValueError(f"seed must fit in 64 bits, got {seed}")
    return seed - _U64 if seed >= (1 << 63) else seed


def systolic_matmul(  # long: the op's full documentation, units and shapes
    a: torch.Tensor,
    w: torch.Tensor,
    p_bits: Union[torch.Tensor, Sequence[float], None],
    protect: int = 0,
    seed: int = 0,
    layer: int = 0,
    row_offset: int = 0,
    rows: int = ROWS,
    *,
    drop: bool = False,
    impl: str = "auto",
    patterns: Optional[torch.Tensor] = None,
    joint: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer matmul on a simulated systolic array, with a timing error
    drawn for every bit of every MAC's W-bit partial sum: a protected bit's
    error is detected (Razor) and either corrected by a replay or, with
    ``drop``, the MAC's update is dropped (TE-Drop); any other error flips
    its bit. The law, the event drawing and the random numbers are
    specified once, in ``csrc/fault_model.h`` (docs/op.md); the events are a
    pure function of (seed, layer, global row, global column, k, bit), so
    the result is bit-identical for any thread count, batching (given
    matching ``row_offset``), tile height, path and device, and equals
    :func:`pyvs.reference.systolic_matmul`.

    Args:
        a (Tensor[M, K] or Tensor[G, M, K], int8 or uint8): activations.
        w (Tensor[K, N] or Tensor[G, K, N], int8): weights; G groups are G
            independent GEMMs in one call (grouped/depthwise convolution);
            group g's column n is global column ``g * N + n``.
        p_bits (Tensor[W], float64, or a sequence): probability in [0, 1]
            that accumulator bit b (LSB = 0) misses the clock at one MAC.
            W, the accumulator width, is 8 to 32 bits. CPU or a's device.
        protect (int): bit mask (< 2^W) of the bits with Razor correction.
        seed (int): 64-bit random seed.
        layer (int): stream id in [0, 2^32), one per layer.
        row_offset (int): global index of a's row 0.
        rows (int): MACs per accumulation: the array height for a
            weight-stationary array (K-tiles of ``rows``), K for an
            output-stationary one (>= 1).
        drop (bool): what a detected error (an erring protected bit) does:
            False (default), a replay: the protected bits come out right and
            the MAC's other erring bits flip; True, TE-Drop (ThUnderVolt,
            DAC 2018): the MAC's update is skipped, the partial sum keeps
            its value from before the MAC, and none of its errors lands.
        patterns (Tensor[P], int64), joint (Tensor[W + 1, P], float64):
            conditioned injection instead of independent bits (both or
            neither; CPU or a's device): a MAC's erring bits are exactly
            ``patterns[j]`` (a non-empty mask) with probability
            ``joint[L, j]``, L its signature, the number of top bits (from
            bit W - 1 down) in which the partial sum entering it and its
            product differ (:func:`pyvs.timing.signatures.signature`); each
            row sums to at most 1. ``p_bits`` then gives only W and must be
            zeros (None: made so).
        impl (str): how to compute it, never what: ``"simple"`` runs the
            definition output by output; ``"fast"`` computes the clean product
            with an exact integer GEMM (float32 BLAS in exact K-chunks on CPU,
            ``torch._int_mm`` on CUDA), draws every output's events without
            touching the data, and recomputes partial sums only at
            unprotected events; ``"auto"`` (default) takes the fast path
            unless K < 16 (CPU) or K < 32 (CUDA), or at least half of the
            outputs would need patching. All three give identical results.

    Returns:
        out (Tensor[M, N] or Tensor[G, M, N], int32): the faulty products
            (contiguous, or groups-innermost: :func:`groups_innermost`).
        stats (Tensor[2, W], int64): per-bit counts of injected errors (row
        0: flips that landed in a sum) and detected ones (row 1: protected
        bits that erred; replays, or with ``drop`` the erring bits of the
        dropped MACs).
    """
    if p_bits is None and isinstance(joint, torch.Tensor) and joint.dim() == 2:
        p_bits = torch.zeros(joint.shape[0] - 1, dtype=torch.float64)
    return torch.ops.pyvs.systolic_matmul(
        a, w, as_p_bits(p_bits), integer(protect, "protect"), seed64(seed), integer(layer, "layer"),
        integer(row_offset, "row_offset"), integer(rows, "rows"), str(impl), _flag(drop, "drop"),
        patterns, joint,
    )


def _flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"systolic_matmul: {name} must be True or False, got {value!r}")
    return value


def _check_shapes(a, w, p_bits, protect, layer, row_offset, rows, impl):
    """The checks of check_matmul_args (csrc/systolic_matmul.cpp) that need no
    tensor values, in the same words: what the fake kernel can verify."""
    check_type = torch._check_type
    check = torch._check_value
    check_type(a.dtype in (torch.int8, torch.uint8),
               lambda: f"systolic_matmul: a must be int8 or uint8, got {a.dtype}")
    check_type(w.dtype == torch.int8, lambda: f"systolic_matmul: w must be int8, got {w.dtype}")
    check(a.dim() in (2, 3),
          lambda: f"systolic_matmul: a must be [M, K] or [G, M, K], got shape {tuple(a.shape)}")
    check(w.dim() == a.dim(), lambda: f"systolic_matmul: w must have the rank of a ({a.dim()})")
    check(a.device == w.device, lambda: "systolic_matmul: a and w must be on the same device, "
          f"got a on {a.device} and w on {w.device}")
    check(p_bits.device.type == "cpu" or p_bits.device == a.device,
          lambda: f"systolic_matmul: p_bits must be on the CPU or on a's device ({a.device}), "
          f"got {p_bits.device}")
    check(w.shape[-2] == a.shape[-1], lambda: "systolic_matmul: K mismatch")
    check(a.dim() == 2 or w.shape[0] == a.shape[0], lambda: "systolic_matmul: group count mismatch")
    check_type(p_bits.dtype == torch.float64, lambda: f"systolic_matmul: p_bits must be float64, got {p_bits.dtype}")
    check(p_bits.dim() == 1, lambda: f"systolic_matmul: p_bits must be 1-D [W], got shape {tuple(p_bits.shape)}")
    W = p_bits.shape[0]
    check(MIN_BITS <= W <= MAX_BITS, lambda: f"systolic_matmul: p_bits has length {W}; "
          f"the accumulator width W must be between {MIN_BITS} and {MAX_BITS} bits")
    check(0 <= protect < (1 << W), lambda: f"systolic_matmul: protect mask {protect:#x} has bits outside "
          f"the {W}-bit accumulator")
    check(rows >= 1, lambda: f"systolic_matmul: rows (systolic array height) must be >= 1, got {rows}")
    check(0 <= layer < (1 << 32), lambda: f"systolic_matmul: layer (stream id) must be in [0, 2^32), got {layer}")
    check(0 <= row_offset <= (1 << 32) - a.shape[-2],
          lambda: f"systolic_matmul: row_offset + M must be in [0, 2^32], got row_offset={row_offset}")
    check(impl in IMPLS, lambda: f"systolic_matmul: impl must be 'auto', 'fast' or 'simple', got '{impl}'")
    return W


@torch.library.register_fake("pyvs::systolic_matmul")
def _systolic_matmul_fake(a, w, p_bits, protect=0, seed=0, layer=0, row_offset=0, rows=ROWS,
                          impl="auto", drop=False, patterns=None, joint=None):
    W = _check_shapes(a, w, p_bits, protect, layer, row_offset, rows, impl)
    torch._check_value((patterns is None) == (joint is None),
                       lambda: "systolic_matmul: patterns and joint go together (conditioned injection)")
    if joint is not None:
        torch._check_value(joint.dim() == 2 and joint.shape[0] == W + 1 and patterns.dim() == 1
                           and joint.shape[1] == patterns.shape[0],
                           lambda: f"systolic_matmul: joint must be [W + 1, P] = [{W + 1}, P] for patterns [P]")
    stats = a.new_empty((2, W), dtype=torch.int64)
    if a.dim() == 2:
        return a.new_empty((a.shape[0], w.shape[1]), dtype=torch.int32), stats
    G, M, N = a.shape[0], a.shape[1], w.shape[2]
    if groups_innermost(a, N):
        return torch.empty_strided((G, M, 1), (1, G, 1), dtype=torch.int32, device=a.device), stats
    return a.new_empty((G, M, N), dtype=torch.int32), stats


def groups_innermost(a: torch.Tensor, n: int) -> bool:
    """Whether the op's output is groups-innermost, int32 [G, M, 1] with
    strides (1, G, 1): on CUDA, for one column per group (N = 1) with a's
    groups innermost in memory (a depthwise conv's channels-last taps), so
    that the kernels load and store coalesced. Contiguous otherwise."""
    return a.device.type == "cuda" and a.dim() == 3 and n == 1 and a.shape[0] > 1 and a.stride(0) == 1


# ---- the int8 runtime's elementwise steps (csrc/requantize.*) ----------------

def quantize(x: torch.Tensor, scale: float, zero_point: int, dtype: str = "uint8") -> torch.Tensor:
    """float x (any shape and layout) -> uint8/int8 q = clamp(round(x * (1 /
    scale)) + zero_point) in float32, rounding half to even, in x's layout;
    one pass. Definition: :func:`pyvs.reference.quantize`."""
    return torch.ops.pyvs.quantize(x.float(), float(scale), int(zero_point), dtype == "uint8")


def requantize(acc: torch.Tensor, offset: torch.Tensor, multiplier: torch.Tensor, lo: int, hi: int,
               out_scale: float, channel_dim: int = 1) -> torch.Tensor:
    """int32 acc [R, C] -> float32 [R, C]: clamp(round(float32(acc + offset[c])
    * multiplier[c]), lo, hi) * out_scale, c the channel (dim ``channel_dim``);
    one pass; -2^22 <= lo <= hi <= 2^22 (an 8-bit grid minus its zero point
    is far inside). Definition: :func:`pyvs.reference.requantize`."""
    return torch.ops.pyvs.requantize(acc, offset, multiplier, int(lo), int(hi), float(out_scale),
                                     int(channel_dim))


@torch.library.register_fake("pyvs::quantize")
def _quantize_fake(x, scale, zero_point, unsigned_):
    torch._check_type(x.dtype == torch.float32, lambda: f"quantize: x must be float32, got {x.dtype}")
    return torch.empty_like(x, dtype=torch.uint8 if unsigned_ else torch.int8)


@torch.library.register_fake("pyvs::requantize")
def _requantize_fake(acc, offset, multiplier, lo, hi, out_scale, channel_dim):
    torch._check_value(acc.dim() == 2 and acc.dtype == torch.int32 and channel_dim in (0, 1),
                       lambda: "requantize: acc must be int32 [R, C] and channel_dim 0 or 1")
    torch._check_value(-(1 << 22) <= lo <= hi <= (1 << 22),
                       lambda: f"requantize: the output range must satisfy -2^22 <= lo <= hi <= 2^22, got "
                       f"lo={lo} hi={hi}")
    return acc.new_empty(acc.shape, dtype=torch.float32)
