"""The joint search of per-layer voltages, protected bits and replay or
TE-Drop: it finds at least the best global setting, its predictions are
the cost model's, it resumes without re-evaluating, it refuses another
search's folder, and its report is written."""
import json
import os

import pytest
import torch

from pyvs.experiment import Experiment
from pyvs.hardware import ArrayConfig
from pyvs.report import schedule_report
from pyvs.schedule_search import Search, SearchConfig, load_chosen, search_rows, split_batches
from pyvs.strategies import Budget
from pyvs.timing import TimingSpec

from tinynet import batched, tiny


def rates(volts):
    """Bits 20 (harmful) and 3 (harmless) err below 0.85 V, more the lower."""
    p = torch.zeros(len(volts), 32, dtype=torch.float64)
    for i, v in enumerate(volts):
        if v < 0.85:
            p[i, 20] = p[i, 3] = 1e-2 * (0.85 - v)
    return p


def _search(out, config=None, **kw):
    _, images, q = tiny()
    images = torch.cat([images, images.flip(0)])
    first, rest = split_batches(batched(images), 24)
    exp = Experiment(q, first, array=ArrayConfig(rows=16, **kw), timing=TimingSpec.custom(rates), progress=False)
    config = config or SearchConfig((0.9, 0.8, 0.7, 0.6), latency_budgets=(1e-3, 0.05), accuracy=0.05)
    return Search(exp, exp.on_images(rest, 24), config, str(out), progress=False)


def test_split_batches_keeps_the_order_and_every_image():
    batches = [(torch.arange(5), torch.arange(5)), (torch.arange(5, 8), torch.arange(5, 8))]
    first, rest = split_batches(batches, 6)
    assert torch.cat([y for _, y in first]).tolist() == [0, 1, 2, 3, 4, 5]
    assert torch.cat([y for _, y in rest]).tolist() == [6, 7]
    assert split_batches(batches, 0)[0] == [] and split_batches(batches, 8)[1] == []


def test_the_search_finds_at_least_the_best_global_setting_and_reports_on_other_images(tmp_path):
    search = _search(tmp_path)
    choices = search.run()
    by = {(c.family, c.latency_budget): c for c in choices}
    assert set(by) == {(f, b) for f in ("global", "schedule", "global-drop", "schedule-drop") for b in (1e-3, 0.05)}
    for (family, latency), c in by.items():
        budget = Budget(0.05, latency)
        assert search.meets(c.search, budget), (family, latency)
        assert c.report is not None and c.report.accuracy.n == 24 and c.search.accuracy.n == 24
        assert c.report.schedule == c.search.schedule and c.report.protect == c.search.protect
        if family.startswith("schedule"):
            glob = by[(family.replace("schedule", "global"), latency)]
            assert c.search.costs.energy_j <= glob.search.costs.energy_j * (1 + 1e-12)
    # TE-Drop pays no replay stalls, so its global point may sit lower than replay's.
    assert by[("global-drop", 1e-3)].search.costs.latency_overhead == 0
    assert min(by[("global-drop", 1e-3)].search.schedule.values()) <= min(by[("global", 1e-3)].search.schedule.values())
    # Every evaluation is in the folder: search rows on the search images, one report row per distinct choice.
    rows = search_rows(str(tmp_path))
    assert {s for s, _ in rows} == {"search", "report"} and all(r.accuracy.n == 24 for _, r in rows)
    assert load_chosen(str(tmp_path))[0].search == choices[0].search
    paths = schedule_report(str(tmp_path))
    assert all(os.path.getsize(p) > 0 for p in paths) and paths[-1].endswith("schedule.md")


def test_a_resumed_search_evaluates_nothing_again_and_another_search_is_refused(tmp_path):
    first = _search(tmp_path)
    choices = first.run()
    # a folder from before a field that does not change its results resumes too
    meta_path = tmp_path / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["array"]["dvfs_switch_ns"]
    meta_path.write_text(json.dumps(meta))
    again = _search(tmp_path)
    assert [c.search for c in again.run()] == [c.search for c in choices]
    assert again.exp.evaluations == again.report_exp.evaluations == 0
    other = SearchConfig((0.9, 0.7), latency_budgets=(0.05,), accuracy=0.05)
    with pytest.raises(ValueError, match="holds another search"):
        _search(tmp_path, other).run()


def test_predictions_are_the_cost_model_at_the_expected_replays(tmp_path):
    search = _search(tmp_path)
    s = dict.fromkeys(search.exp.kinds, 0.7)
    s["pw"] = 0.6
    mask = 1 << 20
    costs, detected = search.predict(s, mask, "replay")
    macs = search.exp.workload.macs_by_layer
    expected = {n: 1e-2 * (0.85 - v) * macs[n] for n, v in s.items()}
    assert detected == pytest.approx(sum(expected.values()))
    assert costs == search.exp.workload.costs(s, 1, expected)
    drop, _ = search.predict(s, mask, "drop")
    assert drop.latency_overhead == drop.switch_overhead > 0 and drop.energy_replay_j == 0
    # A move protects the bits whose expected errors cross half the accuracy budget on the way.
    top = dict.fromkeys(search.exp.kinds, 0.9)
    assert search.grown_mask(0, top, s) == (1 << 20) | (1 << 3)
    assert search.grown_mask(1 << 20, s, dict.fromkeys(s, 0.6)) == 1 << 20  # bit 3 already erred, unprotected


def test_bad_search_settings_are_refused():
    for kw, match in [(dict(voltages=()), "distinct grid voltages"), (dict(voltages=(0.5, 0.5)), "distinct"),
                      (dict(voltages=(0.5,), groups="block"), "groups must be"),
                      (dict(voltages=(0.5,), latency_budgets=(2.0,)), "latency must be a fraction")]:
        with pytest.raises(ValueError, match=match):
            SearchConfig(**kw)
