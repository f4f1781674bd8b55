"""Analytic per-bit timing-error probabilities of the PE's accumulator.

Arrival times are Gaussian random variables in units of the nominal gate
delay d(V_nom); a path's delay is the sum of its gates' delays, each
N(d_kind, (sigma_gate * d_kind)^2), independent. Where signals meet, the
arrival is the max of Gaussians, by Clark's moment matching, keeping every
arrival in canonical first-order form (linear in the gates' deviations) so
that the correlation of reconvergent paths is accounted for: block-based
statistical static timing (SSTA) as in Visweswariah et al., DAC 2004.

1. The multiplier's product bit j settles at Y_j: SSTA over the multiplier's
   gates (:mod:`pyvs.timing.datapath`), whatever the operands (the
   multiplier is timed statically, i.e. pessimistically).
2. The accumulator adder's sum bit b: its carry comes from the nearest cell
   i < b that does not propagate (a generate or kill), through the
   propagating cells i+1..b-1 (see RippleCarryAdder). For each such
   configuration the arrival A_b(i) is a max/sum expression of the Y_j and
   the cell delays; the operands decide P(config) (closed form for uniform
   operands, counted over a sample for empirical ones).
3. P_b(V, f) = sum over configs of P(config) * P(A_b(i) * d(V)/d(V_nom) > T),
   with T = 1/f in the same units: the design is calibrated so that at
   V_nom the worst-case (topologically longest) path times (1 + guard_band)
   equals the clock period at the design frequency (:mod:`pyvs.timing.clock`).

A bit that misses the clock is taken to be wrong, i.e. to flip (pessimistic:
a late bit whose old and new values agree, and that does not glitch, would
in fact be right).
"""
from __future__ import annotations

import functools
import math
from typing import Dict, List, Tuple

import numpy as np
import torch

from ..hardware import CLOCK_GHZ, ArrayConfig
from .clock import capture_times, clock_period
from .datapath import CONST0, CONST1, DEFAULT_ADDER, MacNetlist, build_mac
from .operands import EmpiricalOperands, UniformOperands
from .params import TechParams

_SQRT2 = math.sqrt(2.0)


def _phi(x):
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _Phi(x):
    return 0.5 * math.erfc(-x / _SQRT2)


class Arrival:
    """An arrival time in canonical first-order form: mean + coef . eps + r,
    eps the standard-normal delay deviations of the gates (one per gate of the
    netlist), r an independent residual of variance `resid` (what a max adds
    beyond a linear combination). Units of d(V_nom)."""

    __slots__ = ("mean", "coef", "resid")

    def __init__(self, mean: float, coef: np.ndarray, resid: float = 0.0):
        self.mean, self.coef, self.resid = mean, coef, resid

    @property
    def var(self) -> float:
        return float(self.coef @ self.coef) + self.resid

    def through(self, gate: int, delay: float, sigma_rel: float) -> "Arrival":
        """This signal after gate number `gate` of nominal delay `delay`."""
        coef = self.coef.copy()
        coef[gate] += sigma_rel * delay
        return Arrival(self.mean + delay, coef, self.resid)


def amax(a: Arrival, b: Arrival) -> Arrival:
    """max(a, b): Clark's moments (Oper. Res. 1961) with the correlation that
    the shared gates give, and the canonical form re-expressed with the
    tightness probability (Visweswariah et al., DAC 2004)."""
    va, vb = a.var, b.var
    theta2 = va + vb - 2.0 * float(a.coef @ b.coef)
    if theta2 <= 1e-18:
        return a if a.mean >= b.mean else b
    theta = math.sqrt(theta2)
    al = (a.mean - b.mean) / theta
    T, f = _Phi(al), _phi(al)
    mean = a.mean * T + b.mean * (1 - T) + theta * f
    second = (a.mean ** 2 + va) * T + (b.mean ** 2 + vb) * (1 - T) + (a.mean + b.mean) * theta * f
    coef = T * a.coef + (1 - T) * b.coef
    resid = max(second - mean * mean - float(coef @ coef), 0.0)
    return Arrival(mean, coef, resid)


def multiplier_arrivals(mac: MacNetlist, tech: TechParams) -> Tuple[Dict[int, Arrival], int]:
    """Canonical SSTA over the multiplier's gates (timed statically).
    Returns the arrival of every multiplier net and the number of gates."""
    n_gates = len(mac.net.gates)
    zero = Arrival(0.0, np.zeros(n_gates))
    arr: Dict[int, Arrival] = {CONST0: zero, CONST1: zero}
    for x in mac.a + mac.w + mac.x:
        arr[x] = zero
    for gi, g in enumerate(mac.net.gates[: mac.n_multiplier_gates]):
        t = arr[g.ins[0]]
        for i in g.ins[1:]:
            t = amax(t, arr[i])
        arr[g.out] = t.through(gi, tech.gate_delay(g.kind), tech.sigma_gate)
    return arr, n_gates


def _ripple_cells(mac: MacNetlist):
    """Gate numbers of each ripple-adder cell j: (p_j xor, g_j and, s_j xor,
    carry mux), found in the netlist, and the product net feeding cell j."""
    by_out = {g.out: (gi, g) for gi, g in enumerate(mac.net.gates)}
    mux_by_sel = {g.ins[0]: (gi, g) for gi, g in enumerate(mac.net.gates) if g.kind == "mux"}
    cells = []
    for s_net in mac.sums:
        s_idx, s_gate = by_out[s_net]
        p_idx, p_gate = by_out[s_gate.ins[0]]
        m_idx, m_gate = mux_by_sel[s_gate.ins[0]]
        g_idx, _ = by_out[m_gate.ins[2]]
        cells.append((p_idx, g_idx, s_idx, m_idx, p_gate.ins[1]))
    return cells


def ripple_config_arrivals(mac: MacNetlist, tech: TechParams) -> List[List[Arrival]]:
    """Arrival of sum bit b for each carry-chain configuration.

    Row b lists b + 1 entries (one for b = 0): entry i + 1 for the chain
    that starts at cell i (p_i = 0, i < b), entry 0 for "every cell below b
    propagates" (the carry starts as the constant c_0 = 0). The accumulator
    register x is ready at time 0; the product bits come from the multiplier."""
    arr, n_gates = multiplier_arrivals(mac, tech)
    s = tech.sigma_gate
    zero = Arrival(0.0, np.zeros(n_gates))
    cells = _ripple_cells(mac)
    p_arr = [amax(zero, arr[y]).through(pi, tech.d_xor, s) for pi, _, _, _, y in cells]
    g_arr = [amax(zero, arr[y]).through(gi, tech.d_and, s) for _, gi, _, _, y in cells]
    rows = []
    for b, (_, _, s_idx, _, _) in enumerate(cells):
        if b == 0:  # s_0 = p_0 ^ c_0, c_0 constant
            rows.append([p_arr[0].through(s_idx, tech.d_xor, s)])
            continue
        row = []
        for start in range(-1, b):
            if start == -1:   # c_1 = p_0 ? c_0 : g_0 with p_0 = 1: select and c_0 = 0
                c = p_arr[0].through(cells[0][3], tech.d_mux, s)
                first = 1
            else:             # c_{i+1} = g_i, selected by p_i = 0
                c = amax(p_arr[start], g_arr[start]).through(cells[start][3], tech.d_mux, s)
                first = start + 1
            for j in range(first, b):  # propagating cells: select and carry-in
                c = amax(p_arr[j], c).through(cells[j][3], tech.d_mux, s)
            row.append(amax(p_arr[b], c).through(s_idx, tech.d_xor, s))
        rows.append(row)
    return rows


def uniform_config_probabilities(acc_bits: int) -> List[np.ndarray]:
    """P(config) per bit when every cell propagates with probability 1/2
    independently (x uniform and independent of the product). Same layout
    as ripple_config_arrivals."""
    out = []
    for b in range(acc_bits):
        if b == 0:
            out.append(np.array([1.0]))
            continue
        probs = [0.5 ** b]                                # all b cells propagate
        probs += [0.5 ** (b - i) for i in range(b)]       # i stops, i+1..b-1 propagate
        out.append(np.array(probs))
    return out


def counted_config_probabilities(x: np.ndarray, y: np.ndarray, acc_bits: int) -> List[np.ndarray]:
    """P(config) per bit counted over operand samples: x the accumulator
    values, y the sign-extended products, both as W-bit patterns (int64)."""
    mask_w = (1 << acc_bits) - 1
    prop = (x ^ y) & mask_w
    out = []
    for b in range(acc_bits):
        if b == 0:
            out.append(np.array([1.0]))
            continue
        low = (1 << b) - 1
        stops = ~prop & low  # cells below b that do not propagate
        counts = np.zeros(b + 1)
        none = stops == 0
        counts[0] = none.sum()
        # The highest stopping cell is where the chain starts: the exponent
        # of the highest set bit (exact: the values are < 2^53).
        top_idx = np.frexp(stops[~none].astype(np.float64))[1] - 1
        counts[1:] += np.bincount(top_idx, minlength=b)[:b]
        out.append(counts / len(x))
    return out


class AnalyticModel:
    """Arrival distributions for one (datapath, technology, operands); cheap
    to evaluate for any voltage and frequency afterwards."""

    def __init__(self, acc_bits: int, tech: TechParams, operand_model, adder: str = DEFAULT_ADDER,
                 design_freq_ghz: float = CLOCK_GHZ, samples: int = 1 << 20, seed: int = 0):
        if adder != DEFAULT_ADDER:
            raise ValueError(f"the static timing model knows the {DEFAULT_ADDER} adder only, not {adder!r}")
        self.acc_bits, self.tech, self.operands = acc_bits, tech, operand_model
        self.mac = build_mac(acc_bits, adder)
        self.t_design = clock_period(self.mac, tech)  # at the design clock, units of d(V_nom)
        self.design_freq_ghz = design_freq_ghz
        self.arrivals = ripple_config_arrivals(self.mac, tech)
        if isinstance(operand_model, UniformOperands):
            self.config_p = uniform_config_probabilities(acc_bits)
        elif isinstance(operand_model, EmpiricalOperands):
            a, w, x = operand_model.sample(samples, acc_bits, np.random.default_rng(seed))
            y = (a * w) & ((1 << acc_bits) - 1)
            self.config_p = counted_config_probabilities(x, y, acc_bits)
        else:
            raise ValueError(f"unsupported operand model {operand_model!r}")
        self._mean = [np.array([a.mean for a in row]) for row in self.arrivals]
        self._sd = [np.sqrt(np.array([a.var for a in row])) for row in self.arrivals]

    def probabilities(self, volts: float, array: ArrayConfig) -> np.ndarray:
        """P_b at one voltage (V) on ``array``'s clock, float64 [acc_bits]."""
        budget = float(capture_times(self.t_design, [volts], array, self.tech, self.design_freq_ghz)[0])
        out = np.empty(self.acc_bits)
        for b in range(self.acc_bits):
            z = (budget - self._mean[b]) / np.maximum(self._sd[b], 1e-300)
            tail = torch.special.ndtr(torch.from_numpy(-z)).numpy()  # accurate far tails
            out[b] = float(np.dot(self.config_p[b], tail))
        return np.clip(out, 0.0, 1.0)


@functools.lru_cache(maxsize=32)
def cached_uniform_model(acc_bits: int, tech: TechParams, adder: str, design_freq_ghz: float):
    return AnalyticModel(acc_bits, tech, UniformOperands(), adder, design_freq_ghz)
