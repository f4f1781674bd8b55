"""What the figures promise: voltages at their real positions, every
strategy visible, and the report's flags."""
import pytest

from pyvs import plots
from pyvs.report import flags
from pyvs.strategies import Budget

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


def test_flags_name_every_way_a_point_misses_the_budget():
    ok = dict(agree=1.0, agree_loss=0.0)
    assert flags(row(**ok)) == ""
    assert flags(row(energy_saving=-0.26, latency_overhead=4.81, **ok)) == "more energy than nominal; latency > 1 %"
    assert flags(row(latency_overhead=0.05, **ok), Budget(latency=0.1)) == ""
    # 0.51 V, no protection: top-1 0 % and the biggest saving used to pass without a flag
    lost = flags(row(top1=0.0, top1_loss=0.846, agree=0.0, agree_loss=1.0))
    assert lost == "top-1 loss > 0.3 points; agreement loss > 0.3 points"


def test_the_verdict_is_the_lowest_voltage_within_budget():
    from pyvs.report import verdict, verdict_line
    ok = dict(agree=1.0, agree_loss=0.0)
    rows = [row(0.9, "none", **ok), row(0.52, "auto", energy_saving=0.776, protect="0x80000000", **ok),
            row(0.52, "all", energy_saving=0.708, protect="0xffffffff", **ok),
            row(0.51, "none", top1=0.0, top1_loss=0.846, agree=0.0, agree_loss=1.0, energy_saving=0.79),
            row(0.51, "auto", latency_overhead=0.18, energy_saving=0.745, **ok)]
    assert verdict(rows).key == (0.52, "auto", 0)
    line = verdict_line(rows)
    assert "0.520 V, auto (protects bit 31), 77.6 % less energy" in line
    assert verdict(rows, Budget(latency=0.2)).key == (0.51, "auto", 0)
    assert verdict(rows[3:4]) is None and verdict_line(rows[3:4]).startswith("No point is within")
