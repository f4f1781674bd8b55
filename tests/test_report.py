"""The report of a sweep folder: its files, its table, the Pareto front."""
import os

from pyvs.report import pareto_front, report

from test_sweep import _setup, run_sweep


def test_report(tmp_path):
    q, batches = _setup(16)
    run_sweep(q, batches, str(tmp_path), [0.9, 0.8], ["none", "all", "auto"])
    paths = report(str(tmp_path))
    for p in paths:
        assert os.path.getsize(p) > 0
    assert {os.path.basename(p) for p in paths} >= {"accuracy_vs_voltage.png", "energy_saving.png",
                                                     "latency_overhead.png", "pareto.png", "results.md"}
    assert "| 0.800 | auto |" in open(os.path.join(tmp_path, "results.md")).read()


def test_pareto_front():
    assert pareto_front([(0.5, 0.1), (0.6, 0.1), (0.4, 0.0), (0.6, 0.2)]) == [2, 1]
