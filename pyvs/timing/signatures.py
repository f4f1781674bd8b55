"""What a MAC's own operands say about its timing errors: joint error
patterns per operand pair, and tables of them per operand signature. The
groundwork of injection conditioned on each MAC's operands (issue 22).

The layer tables (:mod:`pyvs.timing.layers`) hold each bit's P(wrong)
averaged over a layer's MACs, and the op draws the bits independently. Real
errors sit on particular operands and hit several top bits of one MAC
together. This module measures both, on the same simulated pairs as the
tables:

- **Joint patterns.** The event model adds within-die variation
  analytically: an event at nominal time tau happens at
  tau + Z sigma_gate sqrt(tau d2). Taking one standard normal Z per
  MAC-cycle (all paths of the MAC slow or fast together) makes the set of
  wrong bits a function of Z, constant between the values of Z at which an
  interval's start or end crosses the capture time; its probabilities are
  differences of the normal CDF (:func:`pattern_probabilities`). Each bit's
  marginal is then exactly the event model's P(wrong) (a test checks it
  against the histograms), so the layer tables stay as they are; what is
  added is the dependence between bits. Independent variation per gate
  would make bits whose late paths share no gate less dependent; the top
  bits' late paths are one carry chain, so for them full correlation is the
  close bound.
- **Signatures.** What a kernel can see at a MAC: the partial sum x that
  enters the PE and its product p = a w (sign-extended to W bits), not the
  previous cycle's operands. The signature (:func:`signature`) is the
  length L of the run of propagating adder cells (bit i of x differs from
  bit i of p) that ends at the top bit: a carry entering that run ripples
  through L cells before the top bits settle. Partial sums are small, so a
  product of the other sign gives L >= W - 17 (the long chains), and one
  of the same sign gives L = 0. :class:`SignatureTable` holds, per L, the
  MACs seen and the joint patterns' probability summed over them: P(pattern
  | L), the previous cycle averaged over as captured.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from .event import BATCH, EventModel
from .operands import Pairs
from .waveforms import simulate, unpack


def signature(x: np.ndarray, a: np.ndarray, w: np.ndarray, acc_bits: int) -> np.ndarray:
    """L per MAC, int64 [N] in 0 .. acc_bits: the number of top adder cells,
    from bit acc_bits - 1 down, whose inputs differ (x's bit != the product's
    bit). x: W-bit patterns; a, w: the operands (int arrays [N])."""
    mask = (1 << acc_bits) - 1
    x, a, w = (np.asarray(v, dtype=np.int64) for v in (x, a, w))
    propagate = (x ^ (a * w)) & mask
    run = np.zeros(len(propagate), dtype=np.int64)
    alive = np.ones(len(propagate), dtype=bool)
    for b in range(acc_bits - 1, -1, -1):
        alive &= ((propagate >> b) & 1).astype(bool)
        run += alive
    return run


@dataclasses.dataclass
class Intervals:
    """The wrong intervals of simulated pairs that end late: interval i is
    bit ``bit[i]`` of pair ``pair[i]``, wrong from nominal time ``start[i]``
    (units of d(V_nom); -inf: wrong from the start of the cycle) to
    ``end[i]``. ``n``: the pairs simulated."""

    pair: np.ndarray   # int64 [I]
    bit: np.ndarray    # int64 [I]
    start: np.ndarray  # float64 [I]
    end: np.ndarray    # float64 [I]
    n: int


def wrong_intervals(model: EventModel, pairs: Pairs, min_end: float, batch: int = BATCH,
                    done: Optional[Callable[[int], None]] = None) -> Intervals:
    """Every wrong interval that ends at or after nominal time ``min_end``
    (units of d(V_nom)), of every pair, simulated as the tables simulate
    them (:meth:`EventModel.histograms`); ``done(k)`` is told of every k
    pairs simulated."""
    pairs.check_width(model.acc_bits)
    found = []
    for lo in range(0, len(pairs), batch):
        hi = min(lo + batch, len(pairs))
        prev, cur = pairs.batch(lo, hi)
        n = hi - lo
        for b, wave in enumerate(simulate(model.mac, prev, cur, model.delays, model.inertial)):
            if not wave.changes:
                continue
            first, last = wave.span
            wrong = unpack(wave.window(first - 1, last + 1), n) ^ unpack(wave.final, n)  # [steps, n]
            ends = ~wrong[1:] & wrong[:-1]           # an interval ends at step first + k
            late = np.flatnonzero(ends[max(0, int(np.ceil(min_end / model.dt)) - first):].any(0))
            if not len(late):
                continue
            w = wrong[:, late]
            e_col, e_k = np.nonzero((~w[1:] & w[:-1]).T)        # ordered by column, then step
            s_col, s_k = np.nonzero((w[1:] & ~w[:-1]).T)
            # An interval open at the window's start (init differs from final) has no start.
            open_col = np.flatnonzero(w[0])
            s_col = np.concatenate([open_col, s_col])
            s_t = np.concatenate([np.full(len(open_col), -np.inf), (first + s_k) * model.dt])
            order = np.lexsort((s_t, s_col))
            s_t = s_t[order]
            e_t = (first + e_k) * model.dt
            keep = e_t >= min_end
            found.append((lo + late[e_col[keep]], np.full(int(keep.sum()), b), s_t[keep], e_t[keep]))
        if done is not None:
            done(n)
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return Intervals(empty, empty, np.zeros(0), np.zeros(0), len(pairs))
    pair, bit, start, end = (np.concatenate(v) for v in zip(*found))
    order = np.lexsort((bit, pair))
    return Intervals(pair[order], bit[order].astype(np.int64), start[order], end[order], len(pairs))


def _between(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """P(lo < Z <= hi) for a standard normal Z, accurate in both tails."""
    lo_t, hi_t = torch.from_numpy(lo), torch.from_numpy(hi)
    upper = (torch.special.ndtr(-lo_t) - torch.special.ndtr(-hi_t)).numpy()   # right tail
    lower = (torch.special.ndtr(hi_t) - torch.special.ndtr(lo_t)).numpy()     # left tail
    return np.where(lo >= 0, upper, lower)


def pattern_probabilities(iv: Intervals, tc: float, sigma_gate: float, d2: float,
                          z_max: float = 12.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The joint patterns of wrong bits at capture time ``tc`` (units of
    d(V_nom)), one Z per pair (see the module's text): (pair int64 [P],
    mask int64 [P] of the wrong bits, probability float64 [P]), one row per
    pattern of non-zero probability of a pair; patterns beyond ``z_max``
    standard deviations (< 1e-33) are left out."""
    if sigma_gate <= 0:  # no variation: each pair has one pattern
        hit = (iv.start <= tc) & (tc < iv.end)
        pairs = np.unique(iv.pair[hit])
        masks = np.zeros(len(pairs), dtype=np.int64)
        np.bitwise_or.at(masks, np.searchsorted(pairs, iv.pair[hit]), np.int64(1) << iv.bit[hit])
        return pairs, masks, np.ones(len(pairs))
    # bit wrong <=> z(end) < Z <= z(start), z(t) = (tc - t) / (sigma sqrt(t d2)); z(-inf) = +inf
    sd = lambda t: sigma_gate * np.sqrt(np.maximum(t, 1e-12) * d2)  # noqa: E731
    z_end = (tc - iv.end) / sd(iv.end)
    with np.errstate(invalid="ignore"):
        z_start = np.where(np.isinf(iv.start), np.inf, (tc - iv.start) / sd(np.where(np.isinf(iv.start), 1.0,
                                                                                        iv.start)))
    live = z_end < z_max
    out_pair, out_mask, out_p = [], [], []
    pair, bit, z_end, z_start = iv.pair[live], iv.bit[live], z_end[live], z_start[live]
    bounds = np.flatnonzero(np.diff(pair)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(pair)]):
        ze, zs, b = z_end[lo:hi], z_start[lo:hi], bit[lo:hi]
        cuts = np.unique(np.concatenate([ze, zs[np.isfinite(zs)]]))
        seg_lo = cuts                                        # segments (cuts[j], cuts[j + 1]], the last to +inf
        seg_hi = np.r_[cuts[1:], np.inf]
        # wrong in (l, u] <=> z_end <= l and u <= z_start (both are cuts)
        wrong = (ze[None, :] <= seg_lo[:, None]) & (seg_hi[:, None] <= zs[None, :])
        masks = np.bitwise_or.reduce(wrong * (np.int64(1) << b)[None, :], axis=1)
        p = _between(seg_lo, seg_hi)
        useful = (masks != 0) & (p > 0)
        for m in np.unique(masks[useful]):
            out_pair.append(int(pair[lo]))
            out_mask.append(int(m))
            out_p.append(float(p[useful & (masks == m)].sum()))
    return (np.asarray(out_pair, dtype=np.int64), np.asarray(out_mask, dtype=np.int64),
            np.asarray(out_p, dtype=np.float64))


@dataclasses.dataclass
class SignatureTable:
    """Joint error patterns per signature L (0 .. W) of one set of pairs at
    one capture time: ``counts[L]`` pairs had signature L, and
    ``mass[L, j]`` is the probability of pattern ``patterns[j]`` (a mask of
    wrong bits) summed over them. P(pattern j | L) = mass[L, j] / counts[L]."""

    counts: np.ndarray     # int64 [W + 1]
    patterns: np.ndarray   # int64 [P]
    mass: np.ndarray       # float64 [W + 1, P]

    @property
    def acc_bits(self) -> int:
        return len(self.counts) - 1

    def rate(self) -> np.ndarray:
        """P(some bit wrong | L), float64 [W + 1] (0 where no pair had L)."""
        return self.mass.sum(1) / np.maximum(self.counts, 1)

    def bit_rates(self) -> np.ndarray:
        """P(bit b wrong), averaged over all pairs, float64 [W]: the layer
        table's row at this capture time."""
        bits = (self.patterns[:, None] >> np.arange(self.acc_bits)[None]) & 1
        return self.mass.sum(0) @ bits / self.counts.sum()

    def op_tables(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """What the op's conditioned injection takes (:func:`pyvs.ops.systolic_matmul`):
        patterns int64 [P] and joint float64 [W + 1, P], joint[L, j] =
        P(the erring bits are exactly pattern j | signature L) (0 where no
        pair had signature L). No pattern at all: one that never happens."""
        if not len(self.patterns):
            return torch.tensor([1 << (self.acc_bits - 1)]), torch.zeros(self.acc_bits + 1, 1, dtype=torch.float64)
        joint = self.mass / np.maximum(self.counts, 1)[:, None]
        return torch.from_numpy(self.patterns.copy()), torch.from_numpy(np.minimum(joint, 1.0))

    def multi_bit_share(self) -> float:
        """Of the MACs with a wrong bit, the share with more than one."""
        ones = np.array([bin(int(m)).count("1") for m in self.patterns])
        total = self.mass.sum()
        return float(self.mass[:, ones > 1].sum() / total) if total > 0 else 0.0


def signature_table(pairs: Pairs, iv: Intervals, tc: float, sigma_gate: float, d2: float,
                    acc_bits: int, index: Optional[np.ndarray] = None) -> SignatureTable:
    """The :class:`SignatureTable` of ``pairs`` (or of the pairs at
    ``index``: e.g. a held-apart half) at capture time ``tc``; ``iv``: their
    :func:`wrong_intervals`."""
    sig = signature(pairs.x, pairs.a, pairs.w, acc_bits)
    chosen = np.ones(len(pairs), dtype=bool) if index is None else np.isin(np.arange(len(pairs)), index)
    counts = np.bincount(sig[chosen], minlength=acc_bits + 1)
    pair, mask, p = pattern_probabilities(iv, tc, sigma_gate, d2)
    keep = chosen[pair]
    pair, mask, p = pair[keep], mask[keep], p[keep]
    patterns, j = np.unique(mask, return_inverse=True)
    mass = np.zeros((acc_bits + 1, len(patterns)))
    np.add.at(mass, (sig[pair], j), p)
    return SignatureTable(counts, patterns, mass)


def signature_tables(model: EventModel, pairs: Dict[str, Pairs], capture_times: Dict[float, float],
                     halves: bool = False) -> Dict[Tuple[str, float, Optional[int]], SignatureTable]:
    """Per layer and voltage (``capture_times``: V -> t_c), the signature
    table of its pairs; with ``halves`` also of its even- and odd-numbered
    pairs apart (keys (layer, V, 0 / 1); the whole has None)."""
    lowest = min(capture_times.values())
    min_end = lowest - 12 * model.tech.sigma_gate * np.sqrt(max(lowest, 1e-12) * model.d2)
    out = {}
    for name, p in pairs.items():
        iv = wrong_intervals(model, p, min_end)
        for v, tc in capture_times.items():
            out[(name, v, None)] = signature_table(p, iv, tc, model.tech.sigma_gate, model.d2, model.acc_bits)
            if halves:
                for h in (0, 1):
                    out[(name, v, h)] = signature_table(p, iv, tc, model.tech.sigma_gate, model.d2,
                                                        model.acc_bits, np.arange(h, len(p), 2))
    return out


__all__ = ["signature", "Intervals", "wrong_intervals", "pattern_probabilities", "SignatureTable",
           "signature_table", "signature_tables"]
