"""What the figures promise: voltages at their real positions, every
strategy visible, and the report's flags."""
import pytest

from pyvs import plots
from pyvs.report import flags

from test_results import row


def test_uneven_voltage_grid_keeps_real_positions_and_shows_its_gaps():
    edges, which = plots._columns([0.51, 0.53, 0.6, 0.9])
    cells = list(zip(edges[:-1], edges[1:], which))
    drawn = {i: (lo, hi) for lo, hi, i in cells if i >= 0}
    for i, v in enumerate([0.51, 0.53, 0.6, 0.9]):
        lo, hi = drawn[i]
        assert lo < v < hi and hi - lo == pytest.approx(0.02)  # the closest spacing
    assert [i for _, _, i in cells] == [0, 1, -1, 2, -1, 3]  # gaps where nothing was computed
    even_edges, even = plots._columns([0.5, 0.55, 0.6])
    assert even == [0, 1, 2] and even_edges.tolist() == pytest.approx([0.475, 0.525, 0.575, 0.625])


def test_every_strategy_has_its_own_look():
    styles = [plots._style(i, 6) for i in range(6)]
    assert len({(s["marker"], s["ls"]) for s in styles}) == 6
    assert [s["ms"] for s in styles] == sorted((s["ms"] for s in styles), reverse=True)  # largest first
    assert all(s["mfc"] == "none" for s in styles)  # hollow: the ones below stay visible


def test_flags():
    assert flags(row()) == ""
    assert flags(row(energy_saving=-0.26, latency_overhead=4.81)) == "more energy than nominal; latency > 1 %"
    assert flags(row(latency_overhead=0.05), latency_limit=0.1) == ""
