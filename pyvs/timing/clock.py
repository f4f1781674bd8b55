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

from typing import Optional, Sequence

import numpy as np

from ..hardware import ArrayConfig
from .datapath import MacNetlist, worst_case_path
from .params import TechParams


def clock_period(mac: MacNetlist, tech: TechParams, guard_band: Optional[float] = None) -> float:
    """The design clock period, units of d(V_nom): (1 + guard-band) times the
    longest path at nominal delays (``guard_band`` overrides the technology's)."""
    gb = tech.guard_band if guard_band is None else guard_band
    return (1.0 + gb) * worst_case_path(mac, tech)


def capture_times(period: float, voltages: Sequence[float], array: ArrayConfig, tech: TechParams,
                  design_freq_ghz: float) -> np.ndarray:
    """The capture time t_c at each supply voltage (V) for the array's clock,
    units of d(V_nom), float64 [len(voltages)]."""
    scale = design_freq_ghz / array.freq_ghz
    return np.array([period * scale / tech.relative_delay(v, array.v_nominal) for v in voltages])
