"""Gate-level Monte Carlo timing simulation of the PE's MAC: the independent
check of the static model (:mod:`pyvs.timing.static`).

For each sample: draw operands (a, w, x), draw every gate's delay
N(d_kind, (sigma_gate * d_kind)^2), evaluate every gate of the netlist on the
actual values, and time it: statically (max over inputs + delay) for the
multiplier, XOR and AND gates; sensitized for the carry MUX, which settles
when its select and the data input it actually selects have settled. Sum
bit b is late at voltage V and frequency f when its arrival times
d(V)/d(V_nom) exceeds the clock period. Slow (a Python loop over gates,
numpy over samples) by design: it shares nothing with the analytic model but
the netlist and the clock calibration.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..hardware import ACC_BITS, CLOCK_GHZ, ArrayConfig
from .clock import capture_times, clock_period
from .datapath import CONST0, CONST1, build_mac
from .operands import operands as make_operands
from .params import DEFAULT, TechParams


def simulate(mac, tech: TechParams, a, w, x, rng: np.random.Generator):
    """Values and arrival times (units of d(V_nom)) of the MAC's sum bits.

    a, w: int arrays [N] of int8 values; x: int array [N] of W-bit patterns.
    Returns (sums [N, W] bool, arrival [N, W] float32)."""
    n = len(a)
    val = [None] * mac.net.n_nets
    arr = [None] * mac.net.n_nets
    zero_t = np.zeros(n, dtype=np.float32)
    val[CONST0], val[CONST1] = np.zeros(n, bool), np.ones(n, bool)
    arr[CONST0] = arr[CONST1] = zero_t
    for bits, v in ((mac.a, a), (mac.w, w), (mac.x, x)):
        for i, net in enumerate(bits):
            val[net] = ((v >> i) & 1).astype(bool)  # two's complement bits
            arr[net] = zero_t
    for g in mac.net.gates:
        d = tech.gate_delay(g.kind)
        delay = (d * (1.0 + tech.sigma_gate * rng.standard_normal(n))).astype(np.float32)
        ins = g.ins
        if g.kind == "mux":
            sel, d1, d0 = ins
            val[g.out] = np.where(val[sel], val[d1], val[d0])
            arr[g.out] = np.maximum(arr[sel], np.where(val[sel], arr[d1], arr[d0])) + delay
            continue
        v0, v1 = val[ins[0]], val[ins[1]]
        if g.kind == "and":
            val[g.out] = v0 & v1
        elif g.kind == "nand":
            val[g.out] = ~(v0 & v1)
        elif g.kind == "or":
            val[g.out] = v0 | v1
        elif g.kind == "xor":
            val[g.out] = v0 ^ v1
        else:  # pragma: no cover
            raise ValueError(g.kind)
        arr[g.out] = np.maximum(arr[ins[0]], arr[ins[1]]) + delay
    sums = np.stack([val[s] for s in mac.sums], 1)
    arrival = np.stack([arr[s] for s in mac.sums], 1)
    return sums, arrival


def monte_carlo(
    voltages: Sequence[float],
    array: ArrayConfig = ArrayConfig(),
    acc_bits: int = ACC_BITS,
    n: int = 200_000,
    operands: Optional[object] = None,
    tech: TechParams = DEFAULT,
    design_freq_ghz: float = CLOCK_GHZ,
    seed: int = 0,
    chunk: int = 1 << 16,
    check_values: bool = True,
):
    """Count late sum bits over n simulated MACs.

    Returns late counts, int64 [len(voltages), acc_bits] (column b = bit b),
    for voltages in volts on ``array``'s clock. With check_values the
    simulated sums are checked against x + a*w (mod 2^W)."""
    mac = build_mac(acc_bits)
    ops = make_operands(operands)
    budgets = capture_times(clock_period(mac, tech), voltages, array, tech, design_freq_ghz)
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(voltages), acc_bits), dtype=np.int64)
    mask = (1 << acc_bits) - 1
    done = 0
    while done < n:
        m = min(chunk, n - done)
        a, w, x = ops.sample(m, acc_bits, rng)
        sums, arrival = simulate(mac, tech, a, w, x, rng)
        if check_values:
            expected = (x + a * w) & mask
            got = (sums.astype(np.int64) << np.arange(acc_bits)).sum(1)
            if not np.array_equal(got, expected):
                raise AssertionError("gate-level MAC computed a wrong sum")
        for i, budget in enumerate(budgets):
            counts[i] += (arrival > budget).sum(0)
        done += m
    return counts
