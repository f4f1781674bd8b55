"""Event-driven gate-level timing of the PE's MAC, with history: what the
accumulator register captures at the clock edge.

A MAC cycle starts from the state the previous cycle left: every net holds
its settled value for the previous operands (a', w, x'). At time 0 the
activation and partial-sum registers switch to the current operands
(a, w, x); every gate then follows its inputs after its delay, so each net
is a waveform, glitches included, and each accumulator sum bit settles at
its value for the current operands. The register captures the sum bit's
waveform at the clock edge: it is *wrong* when that value differs from the
settled one, and *late* when the waveform still changes after the edge.
Wrong implies late, but not the other way round (a late bit can be caught
at its right value), and a bit whose value does not change can be wrong (a
glitch). Razor detects exactly the wrong captures.

How it is computed:

- Time is discrete, in steps of ``dt`` units of d(V_nom) (the largest step
  that divides every gate delay exactly: 0.5 for the default delays), and
  every waveform is bit-packed over samples (bit i of word j = sample
  64 j + i), so that one numpy operation advances 64 samples. A waveform is
  kept only over the steps where it may change.
- Gates have *inertial* delay by default: a gate's output takes a new value
  d after its inputs settle on it, and only if they hold it for longer than
  d; shorter pulses are rejected (the classic rule; ``inertial=False``
  gives transport delay, which passes every pulse).
- The simulation runs at the nominal gate delays, with time in units of
  d(V_nom): lowering V scales every delay by d(V)/d(V_nom) (alpha-power
  law), so one simulation serves every voltage, clock and guard-band; only
  the capture time t_c = T_clk / (d(V)/d(V_nom)) moves.
- Random within-die variation (sigma_gate, independent per gate) is then
  added analytically: an event at nominal time tau, reached through a path
  of gates whose delays sum to tau, happens at a Gaussian time with
  variance sigma_gate^2 * sum d_i^2, taken as sigma_gate^2 * tau * d2 with
  d2 = (sum over the netlist's gates of d^2) / (sum of d): the path is not
  tracked. The probability that a capture at t_c is wrong is then a sum of
  Gaussian tails over the waveform's wrong intervals, which reaches the
  tiny probabilities (1e-12 and below) that decide where errors begin; a
  test compares it with an explicit Monte Carlo over sampled gate delays
  where the rates are large enough to count.

The outcome of a batch is a histogram over time steps, per sum bit, of the
ends minus the starts of wrong intervals and of the last transitions:
everything P(wrong) and P(late) need at any capture time.
"""
from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Dict, List, Sequence

import numpy as np
import torch

from .datapath import CONST0, CONST1, MacNetlist, arrivals, gate_delays
from .params import TechParams

_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def pack(bits: np.ndarray) -> np.ndarray:
    """bool [N] -> uint64 [ceil(N / 64)], sample i at bit i % 64 of word i // 64."""
    packed = np.packbits(np.asarray(bits, dtype=bool), bitorder="little")
    packed = np.concatenate([packed, np.zeros(-len(packed) % 8, np.uint8)])
    return packed.view("<u8").astype(np.uint64)


def unpack(words: np.ndarray, n: int) -> np.ndarray:
    """uint64 [..., words] -> bool [..., n]."""
    as_bytes = np.ascontiguousarray(words).astype("<u8").view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :n].astype(bool)


@dataclasses.dataclass
class Wave:
    """A net's values over time, bit-packed over the samples: ``init`` before
    step ``start``, ``rows[k]`` at step start + k, ``final`` from
    start + len(rows) on."""

    start: int
    rows: np.ndarray    # uint64 [L, words]
    init: np.ndarray    # uint64 [words]
    final: np.ndarray   # uint64 [words]

    def window(self, t0: int, t1: int) -> np.ndarray:
        """The values at steps t0 .. t1 - 1, uint64 [t1 - t0, words]."""
        lo, hi = self.start, self.start + len(self.rows)
        parts = []
        if t0 < lo:
            parts.append(np.broadcast_to(self.init, (min(lo, t1) - t0, len(self.init))))
        a, b = max(t0, lo), min(t1, hi)
        if a < b:
            parts.append(self.rows[a - lo: b - lo])
        if t1 > hi:
            parts.append(np.broadcast_to(self.final, (t1 - max(t0, hi), len(self.final))))
        return np.concatenate(parts) if len(parts) > 1 else np.ascontiguousarray(parts[0])

    @property
    def changes(self) -> bool:
        return bool(len(self.rows)) or bool(np.any(self.init != self.final))

    @property
    def span(self):
        """[first, last + 1) steps at which the value may differ from init or final."""
        return self.start, self.start + max(len(self.rows), 1)

    def trimmed(self) -> "Wave":
        """The same waveform without leading rows equal to init and trailing
        rows equal to final."""
        rows = self.rows
        if not len(rows):
            return self
        differs_init = np.flatnonzero(np.any(rows != self.init, axis=1))
        differs_final = np.flatnonzero(np.any(rows != self.final, axis=1))
        first = int(differs_init[0]) if len(differs_init) else len(rows)
        last = int(differs_final[-1]) + 1 if len(differs_final) else 0
        if last <= first:  # init up to `first`, final from there: one clean step
            return Wave(self.start + first, rows[:0], self.init, self.final)
        return Wave(self.start + first, rows[first:last], self.init, self.final)


def _apply(kind: str, ins: Sequence[np.ndarray]) -> np.ndarray:
    if kind == "and":
        return ins[0] & ins[1]
    if kind == "nand":
        return ~(ins[0] & ins[1])
    if kind == "or":
        return ins[0] | ins[1]
    if kind == "xor":
        return ins[0] ^ ins[1]
    if kind == "mux":  # (select, data if 1, data if 0)
        return (ins[0] & ins[1]) | (~ins[0] & ins[2])
    raise ValueError(f"unknown gate kind {kind!r}")


def gate_wave(kind: str, ins: Sequence[Wave], d: int, inertial: bool = True) -> Wave:
    """The output waveform of a gate of delay d steps (>= 1) fed by ``ins``."""
    init = _apply(kind, [w.init for w in ins])
    final = _apply(kind, [w.final for w in ins])
    active = [w.span for w in ins if w.changes]
    if not active:
        return Wave(0, np.empty((0, len(init)), np.uint64), init, final)
    lo, hi = min(a for a, _ in active), max(b for _, b in active)
    z = _apply(kind, [w.window(lo, hi) for w in ins])          # zero-delay value, steps lo .. hi-1
    if not inertial:
        return Wave(lo + d, z, init, final).trimmed()
    # Output step t (lo + d .. hi + d) follows the value the inputs held
    # over steps t - d .. t, if they held one; else it keeps its value.
    z = np.concatenate([z, np.broadcast_to(final, (d + 1, len(final)))])
    n_out = hi - lo + 1
    hold1, hold0 = z[:n_out].copy(), ~z[:n_out]
    for k in range(1, d + 1):
        hold1 &= z[k: k + n_out]
        hold0 &= ~z[k: k + n_out]
    out = np.empty_like(hold1)
    y = init
    for i in range(n_out):
        y = hold1[i] | (y & ~hold0[i])
        out[i] = y
    return Wave(lo + d, out, init, final).trimmed()


def delay_step(tech: TechParams) -> float:
    """The largest time step (units of d(V_nom)) that divides every gate
    delay, so that event times are exact (0.5 for the default delays); else
    1/32 of the smallest delay."""
    kinds = ("and", "or", "xor", "mux")
    fractions = [Fraction(tech.gate_delay(k)).limit_denominator(64) for k in kinds]
    if all(abs(float(f) - tech.gate_delay(k)) < 1e-12 for f, k in zip(fractions, kinds)):
        den = math.lcm(*[f.denominator for f in fractions])
        return float(Fraction(math.gcd(*[int(f * den) for f in fractions]), den))
    return min(tech.gate_delay(k) for k in kinds) / 32


def _input_waves(mac: MacNetlist, prev: Dict[str, np.ndarray], cur: Dict[str, np.ndarray], n: int):
    words = (n + 63) // 64
    waves: Dict[int, Wave] = {}
    for const, value in ((CONST0, np.uint64(0)), (CONST1, _ONES)):
        full = np.full(words, value, np.uint64)
        waves[const] = Wave(0, np.empty((0, words), np.uint64), full, full)
    for name, nets in (("a", mac.a), ("w", mac.w), ("x", mac.x)):
        for i, net in enumerate(nets):
            before, after = pack((prev[name] >> i) & 1), pack((cur[name] >> i) & 1)
            rows = after[None] if np.any(before != after) else np.empty((0, words), np.uint64)
            waves[net] = Wave(0, rows, before, after)
    return waves


def simulate(mac: MacNetlist, prev: Dict[str, np.ndarray], cur: Dict[str, np.ndarray], delays: Sequence[int],
             inertial: bool = True) -> List[Wave]:
    """The waveforms of the W sum bits for N samples (a cycle with inputs
    ``prev`` then ``cur``: dicts of int arrays [N] 'a', 'w', 'x', two's
    complement values) and gate delays in steps (one per gate, >= 1)."""
    n = len(cur["a"])
    waves = _input_waves(mac, prev, cur, n)
    last_use: Dict[int, int] = {}
    for i, g in enumerate(mac.net.gates):
        for net in g.ins:
            last_use[net] = i
    keep = set(mac.sums)
    for i, g in enumerate(mac.net.gates):
        waves[g.out] = gate_wave(g.kind, [waves[x] for x in g.ins], int(delays[i]), inertial)
        for net in set(g.ins):  # free what no later gate reads
            if last_use.get(net) == i and net not in keep and net > CONST1:
                del waves[net]
    return [waves[s] for s in mac.sums]


@dataclasses.dataclass
class Histograms:
    """What a simulation tells about capture times, per sum bit b and step t
    (the step's time is t * dt units of d(V_nom)):

    ends_minus_starts[b, t]: samples whose wrong interval ends at t minus
        those whose wrong interval starts there (a bit is wrong at a capture
        time t_c when an interval holds t_c);
    last[b, t]: samples whose last transition is at t;
    n: samples; dt: the step."""

    ends_minus_starts: np.ndarray   # int64 [W, T]
    last: np.ndarray                # int64 [W, T]
    n: int
    dt: float

    def __add__(self, other: "Histograms") -> "Histograms":
        T = max(self.last.shape[1], other.last.shape[1])
        pad = lambda h: np.pad(h, ((0, 0), (0, T - h.shape[1])))  # noqa: E731
        return Histograms(pad(self.ends_minus_starts) + pad(other.ends_minus_starts),
                          pad(self.last) + pad(other.last), self.n + other.n, self.dt)


def histograms(sums: List[Wave], n: int, dt: float, horizon: int) -> Histograms:
    """Histograms of a simulated batch over steps 0 .. horizon - 1."""
    return split_histograms(sums, [0, n], dt, horizon)[0]


def split_histograms(sums: List[Wave], bounds: Sequence[int], dt: float, horizon: int) -> List[Histograms]:
    """One histogram per group of consecutive samples of a simulated batch:
    samples bounds[i] .. bounds[i + 1] - 1 (bounds ascending, from 0 to the
    batch's size, no group empty). What lets one simulation serve many
    layers: the counts are those of simulating each group alone."""
    starts_at = np.asarray(bounds[:-1], dtype=np.int64)
    sizes = np.diff(np.asarray(bounds, dtype=np.int64))
    if len(sizes) == 0 or bounds[0] != 0 or np.any(sizes <= 0):
        raise ValueError(f"split_histograms: bounds must rise from 0 with no empty group, got {list(bounds)}")
    n, G, W = int(bounds[-1]), len(sizes), len(sums)
    group = np.repeat(np.arange(G), sizes)
    ems = np.zeros((G, W, horizon), np.int64)
    last = np.zeros((G, W, horizon), np.int64)
    for b, wave in enumerate(sums):
        if not wave.changes:
            continue
        final = unpack(wave.final, n)
        lo, hi = wave.span
        values = unpack(wave.window(lo - 1, hi + 1), n)  # init at lo - 1 ... final at hi
        wrong = values ^ final
        starts = wrong[1:] & ~wrong[:-1]       # a wrong interval begins at step start + k
        ends = ~wrong[1:] & wrong[:-1]
        steps = lo + np.arange(len(values) - 1)
        net = ends.astype(np.int64) - starts
        ems[:, b, steps] += np.add.reduceat(net, starts_at, axis=1).T
        changed = values[1:] != values[:-1]
        any_change = changed.any(0)
        last_k = len(changed) - 1 - np.argmax(changed[::-1], axis=0)
        np.add.at(last[:, b], (group[any_change], steps[last_k[any_change]]), 1)
    return [Histograms(ems[g], last[g], int(sizes[g]), dt) for g in range(G)]


def _survival(tau: np.ndarray, tc: np.ndarray, sigma_gate: float, d2: float) -> np.ndarray:
    """P(an event at nominal time tau happens after tc), float64 [len(tau), len(tc)]."""
    tau = tau[:, None]
    if sigma_gate <= 0:
        return (tau > tc[None]).astype(np.float64)
    sd = sigma_gate * np.sqrt(np.maximum(tau, 1e-12) * d2)
    return torch.special.ndtr(torch.from_numpy((tau - tc[None]) / sd)).numpy()


def probabilities(h: Histograms, tc: Sequence[float], sigma_gate: float, d2: float):
    """(P(wrong), P(late)), float64 [len(tc), W]: the capture at time tc
    (units of d(V_nom)) differs from the settled value / precedes the last
    transition, averaged over the samples, gate-delay variation included."""
    tc = np.asarray(tc, dtype=np.float64)
    tau = np.arange(h.last.shape[1]) * h.dt
    S = _survival(tau, tc, sigma_gate, d2)                       # [T, len(tc)]
    wrong = np.clip(h.ends_minus_starts @ S / h.n, 0.0, 1.0)     # [W, len(tc)]
    late = np.clip(h.last @ S / h.n, 0.0, 1.0)
    return np.minimum(wrong, late).T, late.T


def variation_weight(mac: MacNetlist, tech: TechParams) -> float:
    """d2 = sum of d^2 over sum of d, over the netlist's gates: a path of
    nominal length tau has delay variance about sigma_gate^2 * tau * d2."""
    d = np.array(gate_delays(mac, tech))
    return float((d * d).sum() / d.sum())


def nominal_delays(mac: MacNetlist, tech: TechParams, dt: float) -> List[int]:
    """Each gate's nominal delay in steps of dt (at least 1)."""
    return [max(1, int(round(d / dt))) for d in gate_delays(mac, tech)]


def horizon_steps(mac: MacNetlist, delays: Sequence[int]) -> int:
    """One more than the latest step any net can change at with these delays."""
    arr = arrivals(mac, [int(d) for d in delays])
    return max(arr[s] for s in mac.sums) + 2
