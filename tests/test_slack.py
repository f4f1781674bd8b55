"""Slack as an axis: the (guard-band x voltage) map on a real (tiny)
converted model against its definition, its monotonicity, the frontier
rule, and the bisection for the guard-band a (V, overhead) point implies."""
import math
import os

import numpy as np
import pytest

import pyvs.timing as T
from pyvs.experiment import Experiment
from pyvs.hardware import ArrayConfig
from pyvs.slack import SlackMap, implied_guard_band, slack_map, summary_rows
from pyvs.timing import TimingSpec

from tinynet import batched, tiny

VOLTS = [0.42, 0.45, 0.48, 0.5, 0.55, 0.6, 0.7, 0.9]
GBS = [0.0, 0.1, 0.5, 1.0]


@pytest.fixture(scope="module")
def setup():
    _, images, q = tiny()
    spec = TimingSpec.named("event", calibration_images=16, pairs_per_layer=1024)
    exp = Experiment(q, batched(images, 8), array=ArrayConfig(rows=16), timing=spec, progress=False)
    lt = exp.layer_timing()
    return exp.workload, lt, slack_map(lt, exp.workload, GBS, list(reversed(VOLTS)))


def test_errors_are_probabilities_times_macs(setup):
    work, lt, m = setup
    assert m.voltages == VOLTS and m.guard_bands == GBS
    macs = work.macs_by_layer
    for i, g in enumerate(GBS):
        tables = lt.tables(VOLTS, work.array, guard_band=g)
        # layers without captured pairs take the MAC-weighted mean of the others
        mean = sum(tables[n] * macs[n] for n in tables) / sum(macs[n] for n in tables)
        want = [sum(float((tables.get(n, mean)[j]).sum()) * macs[n] for n in macs) for j in range(len(VOLTS))]
        assert np.allclose(m.errors[i], want, rtol=1e-9, atol=0)
        # the overhead of a cell: coalesced stalls over base cycles, never above the bound
        assert np.all(m.overhead[i] <= m.overhead_bound[i] * (1 + 1e-12))


def test_the_map_is_monotone_and_clean_at_nominal(setup):
    _, _, m = setup
    assert np.all(np.diff(m.overhead, axis=1) <= 1e-15), "overhead must fall as the voltage rises"
    assert np.all(np.diff(m.overhead, axis=0) <= 1e-15), "overhead must fall as the guard-band grows"
    assert np.all(np.diff(m.errors, axis=0) <= 1e-9 * m.errors[:-1].clip(1))
    assert m.overhead[:, -1].max() == 0 and m.errors[1:, -1].max() * 1 < 1e-3  # 0.9 V, g > 0
    assert m.errors[0, 0] > 1e3, "the tiny model errs a lot at 0.42 V without a guard-band"
    assert np.all((m.protected_bits > 0) == (m.errors > 0))


def test_the_frontier_is_the_lowest_voltage_with_every_voltage_above_within_budget():
    m = SlackMap([0.0, 0.5, 1.0], [0.5, 0.6, 0.7, 0.8],
                 errors=np.zeros((3, 4)), energy_saving=np.zeros((3, 4)), protected_bits=np.zeros((3, 4), int),
                 overhead=np.array([[0.5, 0.0, 0.2, 0.0],    # 0.6 V is within but 0.7 V above is not
                                    [0.0, 0.0, 0.0, 0.0],
                                    [0.1, 0.1, 0.1, 0.1]]), overhead_bound=np.zeros((3, 4)))
    assert m.lowest_voltage(0.01) == [0.8, 0.5, None]
    assert m.lowest_voltage(0.2) == [0.6, 0.5, 0.5]


def test_the_implied_guard_band_is_the_smallest_that_meets_the_point(setup):
    work, lt, _ = setup
    for volts, budget in [(0.5, 1e-5), (0.45, 1e-3)]:
        g = implied_guard_band(lt, work, volts, budget)
        assert g is not None and 0 < g < 4
        at = lambda gb: slack_map(lt, work, [gb], [volts]).overhead[0, 0]  # noqa: E731
        assert at(g) <= budget < at(g - 2e-4), (volts, g)
    assert implied_guard_band(lt, work, 0.9, 1e-5) == 0.0
    assert implied_guard_band(lt, work, 0.31, 0.0, hi=0.01) is None


class _Row:
    def __init__(self, voltage, overhead, top1_loss, agree_loss):
        from types import SimpleNamespace
        from pyvs.evaluate import Accuracy
        self.voltage, self.costs = voltage, SimpleNamespace(latency_overhead=overhead)
        self.accuracy = Accuracy(1, 0, 0, 0, 0, 0, 0, 0, 0, 0, top1_loss=top1_loss, agree_loss=agree_loss)


def test_summary_takes_the_lowest_voltage_meeting_both_budgets():
    m = SlackMap([0.0, 1.0], [0.5, 0.6, 0.7], errors=np.zeros((2, 3)), overhead_bound=np.zeros((2, 3)),
                 overhead=np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), energy_saving=np.zeros((2, 3)),
                 protected_bits=np.zeros((2, 3), int))
    evaluated = {0.0: [_Row(0.6, 0.0, 0.001, 0.002), _Row(0.5, 0.0, 0.01, 0.0)],   # 0.5 V loses too much
                 1.0: [_Row(0.5, 1e-6, 0.0, 0.0)]}
    rows = summary_rows(m, 1e-5, 0.003, evaluated)
    assert rows == [{"guard_band": 0.0, "lowest_v_all_protected": 0.7, "lowest_v_auto": 0.6},
                    {"guard_band": 1.0, "lowest_v_all_protected": 0.6, "lowest_v_auto": 0.5}]
    assert summary_rows(m, 1e-5, 0.003) == [{k: v for k, v in r.items() if k != "lowest_v_auto"} for r in rows]


@pytest.mark.parametrize("gbs,match", [([], "no guard-band"), ([-0.1], "guard-band must be >= 0"),
                                       ([math.nan], "finite")])
def test_bad_guard_bands(setup, gbs, match):
    work, lt, _ = setup
    with pytest.raises(ValueError, match=match):
        slack_map(lt, work, gbs, [0.5])


def test_the_study_runs_from_python_and_evaluates_below_each_frontier(tmp_path):
    from pyvs.report import slack_report
    from pyvs.slack import study
    from pyvs.strategies import Budget
    _, images, q = tiny()
    spec = TimingSpec.named("event", calibration_images=8, pairs_per_layer=256)
    exp = Experiment(q, batched(images, 8), array=ArrayConfig(rows=16), timing=spec, progress=False)
    s = study(exp, [0.5, 1.0], VOLTS, Budget(accuracy=0.5, latency=1e-3), evaluate_below=1, out_dir=str(tmp_path))
    lows = s.map.lowest_voltage(1e-3)
    for g, low, row in zip([0.5, 1.0], lows, s.summary):
        assert row["lowest_v_all_protected"] == low
        below = [v for v in VOLTS if low is not None and v < low][-1:]
        assert [r.voltage for r in s.evaluated.get(g, [])] == below
        assert (tmp_path / f"gb{g:g}" / "results.json").exists() == bool(below)
    paths = slack_report(s, str(tmp_path))
    assert all(os.path.getsize(p) > 0 for p in paths)
    with pytest.raises(ValueError, match="use the 'event' timing model"):
        study(Experiment(q, batched(images, 8), timing=TimingSpec.named("static-uniform"), progress=False),
              [1.0], VOLTS)
