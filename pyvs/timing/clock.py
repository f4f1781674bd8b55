"""When the accumulator register captures: the clock formula, in one place.

The design is calibrated at the array's nominal supply (ArrayConfig.v_nominal)
and the design clock: there the MAC's topologically longest path, times
(1 + guard-band), fills one clock period. Time is measured in units of the
nominal gate delay d(V_nom). Lowering the supply to V stretches every delay
by d(V)/d(V_nom) (the alpha-power law, :meth:`TechParams.relative_delay`);
a clock of f GHz instead of the design clock scales the period by
f_design / f. So the capture time, in units of nominal-voltage delays, is

    t_c(V, f) = period * (f_design / f) / (d(V) / d(V_nom)).
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np

from ..hardware import ArrayConfig
from .datapath import DEFAULT_ADDER, MacNetlist, build_mac, worst_case_path
from .params import TechParams


def clock_period(mac: MacNetlist, tech: TechParams, guard_band: Optional[float] = None) -> float:
    """The design clock period, units of d(V_nom): (1 + guard-band) times the
    longest path, at nominal delays, of the ripple-carry MAC of the same
    widths (``guard_band`` overrides the technology's). The clock is
    designed once, for the ripple-carry MAC, so that the guard-band fixes the
    technology's gate delay (12.3 ps at 1.0 on the 9 x 8 MAC); a MAC with a faster adder runs
    on the same clock and gates and keeps the time it saves as slack."""
    gb = tech.guard_band if guard_band is None else guard_band
    return (1.0 + gb) * _reference_path(len(mac.a), len(mac.w), len(mac.sums), tech)


@functools.lru_cache(maxsize=16)
def _reference_path(act_bits: int, weight_bits: int, acc_bits: int, tech: TechParams) -> float:
    reference = build_mac(acc_bits, DEFAULT_ADDER, act_bits=act_bits, weight_bits=weight_bits)
    return worst_case_path(reference, tech)


def capture_times(period: float, voltages: Sequence[float], array: ArrayConfig, tech: TechParams,
                  design_freq_ghz: float) -> np.ndarray:
    """The capture time t_c at each supply voltage (V) for the array's clock,
    units of d(V_nom), float64 [len(voltages)]."""
    scale = design_freq_ghz / array.freq_ghz
    return np.array([period * scale / tech.relative_delay(v, array.v_nominal) for v in voltages])
