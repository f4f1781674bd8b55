"""Slack as an axis: how the guard-band at the nominal voltage decides how
far the supply can drop.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
    (this module maps a grid of guard-bands x voltages to costs)

The guard-band g is the timing margin the design keeps at 0.9 V: the clock
period is (1 + g) times the MAC's longest path there. It sets, to first
order, the voltage at which timing errors begin. The event-driven model's
waveforms do not depend on it (only the capture time moves), so one
simulation of every layer's operand pairs (:class:`pyvs.dataflow.LayerTiming`)
gives the per-layer error tables of every (g, V) cell at no further cost.

Each cell is costed with every erring accumulator bit Razor-protected: the
outputs are then those of the fault-free run, whatever the top-1 budget, so
the latency budget alone decides, from the expected corrected errors per
image per layer (P(wrong) x MACs, summed over bits) through the latency
model's stalls (:mod:`pyvs.latency`). ``pyvs slack --evaluate N`` also
measures the 'auto' strategy (protect only what the top-1 budget needs) on
N images below each guard-band's frontier, through :func:`pyvs.sweep.sweep`.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from .checks import integer, number
from .costs import Workload
from .experiment import Experiment, per_bit_max
from .strategies import Budget
from .sweep import Grid, sweep
from .timing import LayerTiming

PAPER_POINT = (0.5, 1e-5)  # the paper's 0.5 V at 0.001 % latency overhead (fraction)
PAPER_BUDGET = Budget(accuracy=0.003, latency=1e-5)  # the paper's 0.3 points of top-1 and 0.001 % latency


@dataclasses.dataclass
class SlackMap:
    """Costs of every (guard-band, voltage) cell with every erring bit
    protected. guard_bands: fractions [G]; voltages: V [V], increasing;
    errors: expected timing errors per image [G, V]; overhead: latency
    overhead (fraction, errors of one cycle share a stall) [G, V];
    overhead_bound: one stall per error [G, V]; energy_saving: fraction
    [G, V]; protected_bits: erring bits protected [G, V]."""

    guard_bands: List[float]
    voltages: List[float]
    errors: np.ndarray
    overhead: np.ndarray
    overhead_bound: np.ndarray
    energy_saving: np.ndarray
    protected_bits: np.ndarray

    def lowest_voltage(self, latency_budget: float) -> List[Optional[float]]:
        """Per guard-band, the lowest voltage of the grid whose overhead (and
        every higher voltage's) is within ``latency_budget`` (fraction), or
        None if even the highest voltage misses it."""
        out = []
        for row in self.overhead:
            ok = row <= latency_budget
            lowest = None
            for i in range(len(self.voltages) - 1, -1, -1):  # down from the highest voltage
                if not ok[i]:
                    break
                lowest = self.voltages[i]
            out.append(lowest)
        return out

    def as_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in dataclasses.asdict(self).items()}


def cell(timing: LayerTiming, work: Workload, volts: Sequence[float], guard_band: float):
    """(errors, overhead, bound, energy saving, protected bits) at each of
    ``volts`` for one guard-band, every erring bit protected, on the
    workload's array."""
    macs = work.macs_by_layer
    table = timing.table(list(volts), work.array, macs, {}, guard_band)
    rows = []
    for v in volts:
        rates = table.rates(v)
        by_layer = {n: float(p.sum()) * macs[n] for n, p in rates.items()}
        erring = per_bit_max(rates) > 0
        costs = work.costs(v, int(erring.sum()), by_layer)
        rows.append((sum(by_layer.values()), costs.latency_overhead, costs.latency_overhead_bound,
                     costs.energy_saving, int(erring.sum())))
    return [np.array(c) for c in zip(*rows)]


def slack_map(timing: LayerTiming, work: Workload, guard_bands: Sequence[float],
              voltages: Sequence[float]) -> SlackMap:
    """The map over guard-bands (fractions >= 0) x voltages (V), on the
    workload's array."""
    gbs = [number(g, "guard-band", minimum=0.0) for g in guard_bands]
    if not gbs:
        raise ValueError("no guard-band given")
    volts = sorted(voltages)
    parts = [cell(timing, work, volts, g) for g in gbs]
    stack = lambda k: np.stack([p[k] for p in parts])  # noqa: E731
    return SlackMap(gbs, volts, stack(0), stack(1), stack(2), stack(3), stack(4).astype(int))


def implied_guard_band(timing: LayerTiming, work: Workload, volts: float = PAPER_POINT[0],
                       overhead: float = PAPER_POINT[1], hi: float = 4.0) -> Optional[float]:
    """The smallest guard-band (fraction) at which ``volts`` costs at most
    ``overhead`` latency (fraction) with every erring bit protected, to
    1e-4 by bisection (overhead falls as the guard-band grows); None if
    even ``hi`` is not enough."""
    at = lambda g: float(cell(timing, work, [volts], g)[1][0])  # noqa: E731
    if at(0.0) <= overhead:
        return 0.0
    if at(hi) > overhead:
        return None
    lo = 0.0
    for _ in range(max(1, math.ceil(math.log2(hi / 1e-4)))):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if at(mid) <= overhead else (mid, hi)
    return hi


def summary_rows(m: SlackMap, latency_budget: float, top1_budget: float,
                 evaluated: Optional[Dict[float, list]] = None) -> List[dict]:
    """Per guard-band: the lowest voltage meeting the latency budget with
    every erring bit protected, and, where 'auto' points were evaluated
    (``evaluated``: guard-band -> result rows), the lowest that meets both
    budgets with 'auto'."""
    out = []
    for g, low in zip(m.guard_bands, m.lowest_voltage(latency_budget)):
        row = {"guard_band": g, "lowest_v_all_protected": low}
        if evaluated is not None:
            ok = [r.voltage for r in evaluated.get(g, [])
                  if r.costs.latency_overhead <= latency_budget and r.accuracy.meets(top1_budget)]
            candidates = ok + ([low] if low is not None else [])
            row["lowest_v_auto"] = min(candidates) if candidates else None
        out.append(row)
    return out


@dataclasses.dataclass
class SlackStudy:
    """``pyvs slack``'s answer: the map, the lowest voltage per guard-band
    (``summary``, :func:`summary_rows`), the guard-band the paper's point
    implies, the 'auto' points measured below each frontier (guard-band ->
    rows; None when not asked), and how it was made (``settings``)."""

    map: SlackMap
    summary: List[dict]
    implied_guard_band: Optional[float]
    evaluated: Optional[Dict[float, list]]
    settings: dict

    def record(self) -> dict:
        """What slack.json holds."""
        return dict(self.settings, summary=self.summary, paper_point=list(PAPER_POINT),
                    implied_guard_band=self.implied_guard_band, map=self.map.as_dict())


def study(exp: Experiment, guard_bands: Sequence[float], voltages: Sequence[float],
          budget: Budget = PAPER_BUDGET, evaluate_below: int = 0, out_dir: Optional[str] = None) -> SlackStudy:
    """The slack map of ``exp`` (its timing spec must capture operands) over
    ``guard_bands`` x ``voltages`` (V), the lowest voltage per guard-band
    within ``budget.latency``, and the implied guard-band; with
    ``evaluate_below`` > 0, the 'auto' strategy measured at that many grid
    voltages under each guard-band's frontier (one resumable sweep per
    guard-band in ``out_dir``/gbG, within ``budget.accuracy``)."""
    if not exp.timing.needs_operands:
        raise ValueError("the slack map simulates operand pairs captured from the model: use the 'event' "
                         f"timing model, not {exp.timing.model!r}")
    integer(evaluate_below, "evaluate_below", 0)
    volts = exp.timing.check_voltages(voltages, exp.array)
    lt = exp.layer_timing()
    m = slack_map(lt, exp.workload, guard_bands, volts)
    implied = implied_guard_band(lt, exp.workload)
    evaluated = None
    if evaluate_below:
        if out_dir is None:
            raise ValueError("evaluating below the frontier needs an output folder for its sweeps")
        evaluated = {}
        for g, low in zip(m.guard_bands, m.lowest_voltage(budget.latency)):
            below = [v for v in m.voltages if low is not None and v < low][-evaluate_below:]
            if below:
                evaluated[g] = sweep(exp.with_timing(exp.timing.with_tech(guard_band=g)), Grid(below, ["auto"]),
                                     budget, os.path.join(out_dir, f"gb{g:g}"))
    settings = {"latency_budget": budget.latency, "top1_budget": budget.accuracy,
                "freq_ghz": exp.array.freq_ghz, "timing": exp.timing.describe()}
    return SlackStudy(m, summary_rows(m, budget.latency, budget.accuracy, evaluated), implied, evaluated, settings)


__all__ = ["SlackMap", "SlackStudy", "slack_map", "implied_guard_band", "summary_rows", "study", "PAPER_POINT"]
