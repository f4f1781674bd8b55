"""The event-driven timing model: per-bit P(wrong) and P(late) of the PE's
accumulator register, from the waveforms of consecutive-cycle operand pairs
(:mod:`pyvs.timing.waveforms`) on the datapath that matches the op (a 9 x 8
signed multiplier: uint8 or int8 activations, int8 weights; see
:mod:`pyvs.timing.datapath`).

P(wrong) is what Razor detects and what the op injects: the register
captures a value other than the settled one. It need not be monotone in
the capture time (a capture can fall inside or after a glitch), so the
tables hold its envelope: an error at some capture time counts at every
earlier one, i.e. at every lower voltage and higher clock. P(late), the
probability that the bit still changes after the edge, is given beside it
for comparison (it bounds P(wrong)).
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from ..hardware import CLOCK_GHZ, ArrayConfig
from .clock import capture_times, clock_period
from .datapath import DEFAULT_ADDER, build_mac
from .operands import Pairs, uniform_pairs
from .params import TechParams
from .waveforms import (Histograms, delay_step, horizon_steps, nominal_delays, probabilities, simulate,
                        split_histograms, variation_weight)

ACT_BITS = 9  # the op's activations, uint8 or int8, as 9-bit two's complement
BATCH = 1 << 15  # samples simulated at once: the per-gate cost is paid once per batch


class EventModel:
    """Event-driven timing for one (width, technology, adder, design clock)."""

    def __init__(self, acc_bits: int, tech: TechParams, adder: str = DEFAULT_ADDER,
                 design_freq_ghz: float = CLOCK_GHZ, inertial: bool = True):
        self.acc_bits, self.tech, self.design_freq_ghz = acc_bits, tech, design_freq_ghz
        self.inertial = inertial
        self.mac = build_mac(acc_bits, adder, act_bits=ACT_BITS)
        self.dt = delay_step(tech)
        self.delays = nominal_delays(self.mac, tech, self.dt)
        self.horizon = horizon_steps(self.mac, self.delays)
        self.d2 = variation_weight(self.mac, tech)

    def histograms(self, pairs: Pairs, batch: int = BATCH) -> Histograms:
        """Simulates every pair (in batches of ``batch`` samples)."""
        return self.histograms_of({"": pairs}, batch)[""]

    def histograms_of(self, groups: Dict[str, Pairs], batch: int = BATCH,
                      done: Optional[Callable[[int], None]] = None) -> Dict[str, Histograms]:
        """Per group (e.g. per layer), the histograms of its pairs. The groups
        are simulated together, ``batch`` samples at a time, so that small
        groups do not each pay the simulator's per-gate cost (the histograms
        are those of simulating each group alone); ``done(k)`` is told of
        every k pairs simulated."""
        for p in groups.values():
            p.check_width(self.acc_bits)
        names = [n for n, p in groups.items() if len(p)]
        everything = Pairs.concat([groups[n] for n in names])
        edges = np.cumsum([0] + [len(groups[n]) for n in names])
        total: Dict[str, Histograms] = {}
        for lo in range(0, len(everything), batch):
            hi = min(lo + batch, len(everything))
            inside = [i for i in range(len(names)) if edges[i] < hi and edges[i + 1] > lo]
            cuts = [max(edges[i], lo) - lo for i in inside] + [hi - lo]
            prev, cur = everything.batch(lo, hi)
            waves = simulate(self.mac, prev, cur, self.delays, self.inertial)
            for i, h in zip(inside, split_histograms(waves, cuts, self.dt, self.horizon)):
                total[names[i]] = h if names[i] not in total else total[names[i]] + h
            if done is not None:
                done(hi - lo)
        return total

    def capture_times(self, voltages: Sequence[float], array: ArrayConfig, guard_band=None) -> np.ndarray:
        """The clock edge, units of d(V_nom) at nominal delays, per voltage
        (V) on ``array``'s clock; ``guard_band`` overrides the technology's."""
        period = clock_period(self.mac, self.tech, guard_band)
        return capture_times(period, voltages, array, self.tech, self.design_freq_ghz)

    def probabilities(self, h: Histograms, voltages: Sequence[float], array: ArrayConfig,
                      guard_band=None) -> Tuple[np.ndarray, np.ndarray]:
        """(P(wrong) envelope, P(late)), float64 [len(voltages), W]."""
        tc = self.capture_times(voltages, array, guard_band)
        return envelope(h, tc, self.tech.sigma_gate, self.d2)


def envelope(h: Histograms, tc: np.ndarray, sigma_gate: float, d2: float):
    """P(wrong) at capture times tc as its running maximum over later
    capture times, and P(late); float64 [len(tc), W] each.

    The maximum is taken on a grid fixed in time (steps of dt / 8 from 0, so
    that it does not depend on which tc are asked for): at tc, over the grid
    points from the last one at or before tc on. That makes the tables
    exactly monotone in tc, whatever grid of voltages and clocks they are
    made on, at the cost of looking up to dt / 8 early; P(late) at tc, which
    bounds the true P(wrong) and is itself monotone, caps it."""
    step = h.dt / 8
    end = h.last.shape[1] * h.dt + 8 * sigma_gate * np.sqrt(h.last.shape[1] * h.dt * d2) + h.dt
    grid = np.arange(0.0, end + step, step)
    wrong, _ = probabilities(h, grid, sigma_gate, d2)                 # [G, W], grid ascending
    running = np.maximum.accumulate(wrong[::-1], axis=0)[::-1]        # max over the grid from each point on
    index = np.clip(np.searchsorted(grid, tc, side="right") - 1, 0, len(grid) - 1)
    late = probabilities(h, tc, sigma_gate, d2)[1]
    return np.minimum(running[index], late), late


@functools.lru_cache(maxsize=8)
def uniform_histograms(acc_bits: int, tech: TechParams, adder: str, design_freq_ghz: float, n: int,
                       seed: int) -> Tuple[EventModel, Histograms]:
    """The model and the histograms of n uniform operand pairs (cached)."""
    model = EventModel(acc_bits, tech, adder, design_freq_ghz)
    return model, model.histograms(uniform_pairs(n, acc_bits, np.random.default_rng(seed)))
