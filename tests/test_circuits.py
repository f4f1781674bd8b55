"""Circuit choices of the timing model: the accumulator's adder (ripple-carry,
Kogge-Stone, Brent-Kung) on the netlist and in the simulator, and the
die's process corner in the delay law."""
import dataclasses

import numpy as np
import pytest

import pyvs.timing as T
from pyvs.cli import main
from pyvs.hardware import ArrayConfig
from pyvs.timing.clock import clock_period
from pyvs.timing.datapath import ADDERS, MacNetlist, Netlist, arrivals, build_mac, worst_case_path
from pyvs.timing.event import ACT_BITS, EventModel
from pyvs.timing.operands import uniform_pairs
from pyvs.timing.params import CORNERS
from pyvs.timing.waveforms import histograms, simulate, unpack

from gates import static_arrivals

PREFIX = [a for a in ADDERS if a != "ripple"]


def _logic(mac, a, w, x) -> np.ndarray:
    """The netlist evaluated gate by gate as plain Boolean logic (no timing):
    the sum bits as integers."""
    val = np.zeros((mac.net.n_nets, a.size), dtype=bool)
    val[1] = True
    for nets, v in ((mac.a, a), (mac.w, w), (mac.x, x)):
        for i, net in enumerate(nets):
            val[net] = (v >> i) & 1
    ops = {"and": lambda p, q: p & q, "nand": lambda p, q: ~(p & q), "or": lambda p, q: p | q,
           "xor": lambda p, q: p ^ q}
    for g in mac.net.gates:
        ins = [val[i] for i in g.ins]
        val[g.out] = np.where(ins[0], ins[1], ins[2]) if g.kind == "mux" else ops[g.kind](*ins)
    bits = np.stack([val[s] for s in mac.sums]).astype(np.int64)
    return (bits << np.arange(len(mac.sums))[:, None]).sum(0)


@pytest.mark.parametrize("adder", list(ADDERS))
@pytest.mark.parametrize("width", [8, 13, 16, 24, 31, 32])
def test_every_adder_computes_the_mac_exactly_at_every_width(adder, width):
    rng = np.random.default_rng(width)
    a, w = rng.integers(-128, 256, 8192), rng.integers(-128, 128, 8192)
    x = rng.integers(0, 1 << width, 8192)
    mac = build_mac(width, adder, act_bits=ACT_BITS)
    assert np.array_equal(_logic(mac, a, w, x), (x + a * w) & ((1 << width) - 1))


@pytest.mark.parametrize("adder", PREFIX)
def test_prefix_adders_settle_exactly_and_never_after_their_static_arrival(adder):
    model = EventModel(32, T.DEFAULT, adder)
    pairs = uniform_pairs(2048, 32, np.random.default_rng(3), unsigned=True)
    prev, cur = pairs.batch(0, len(pairs))
    waves = simulate(model.mac, prev, cur, model.delays)
    settled = (np.stack([unpack(wv.final, len(pairs)) for wv in waves]).astype(np.int64)
               << np.arange(32)[:, None]).sum(0)
    assert np.array_equal(settled, (cur["x"] + cur["a"] * cur["w"]) & 0xFFFFFFFF)
    h = histograms(waves, len(pairs), model.dt, model.horizon)
    arrival = static_arrivals(model.mac, model.delays)
    for b in range(32):
        steps = np.flatnonzero(h.last[b])
        assert len(steps) and steps.max() <= arrival[b]


def _adder_path(adder: str, width: int) -> float:
    """The adder's own longest path, its inputs all arriving at 0."""
    net = Netlist()
    x, y = [net.new_net() for _ in range(width)], [net.new_net() for _ in range(width)]
    sums = ADDERS[adder]().build(net, x, y)
    arr = arrivals(MacNetlist(net, [], [], x, [], sums, 0), [T.DEFAULT.gate_delay(g.kind) for g in net.gates])
    return max(arr[s] for s in sums)


def test_prefix_adders_are_logarithmic_and_share_the_ripple_clock():
    # Doubling the width adds a carry mux per added bit to the ripple-carry
    # adder, one prefix level (an and and an or: 2 delays) to Kogge-Stone and
    # two to Brent-Kung (up- and down-sweep).
    grow = {a: np.diff([_adder_path(a, w) for w in (8, 16, 32)]).tolist() for a in ADDERS}
    assert grow == {"ripple": [8.0, 16.0], "kogge-stone": [2.0, 2.0], "brent-kung": [4.0, 4.0]}
    ripple = build_mac(32, "ripple", act_bits=ACT_BITS)
    for adder in PREFIX:
        mac = build_mac(32, adder, act_bits=ACT_BITS)
        assert worst_case_path(mac, T.DEFAULT) < worst_case_path(ripple, T.DEFAULT)
        assert clock_period(mac, T.DEFAULT) == clock_period(ripple, T.DEFAULT) == 2 * worst_case_path(ripple,
                                                                                                      T.DEFAULT)


def test_the_corner_shifts_the_threshold_in_the_alpha_power_law():
    tech = T.TechParams(corner="slow", sigma_vth_die=0.02)
    # by hand: d(V) = V / (V - Vth)^1.3, Vth 0.30 + 3 * 0.02 on the slow die,
    # over the typical die's d at 0.9 V
    assert tech.relative_delay(0.9, 0.9) == pytest.approx((0.6 / 0.54) ** 1.3)
    assert tech.relative_delay(0.52, 0.9) == pytest.approx(0.52 / 0.16 ** 1.3 / (0.9 / 0.6 ** 1.3))
    fast = dataclasses.replace(tech, corner="fast")
    assert fast.relative_delay(0.52, 0.9) == pytest.approx(0.52 / 0.28 ** 1.3 / (0.9 / 0.6 ** 1.3))
    assert dataclasses.replace(tech, corner="typical").relative_delay(0.9, 0.9) == 1.0


@pytest.mark.parametrize("adder", list(ADDERS))
def test_tables_are_monotone_in_voltage_and_ordered_by_corner(adder):
    volts = [round(0.40 + 0.01 * i, 2) for i in range(31)]
    h = EventModel(32, T.DEFAULT, adder).histograms(uniform_pairs(4096, 32, np.random.default_rng(0)))
    p = {}
    for corner in CORNERS:
        model = EventModel(32, T.TechParams(corner=corner), adder)
        p[corner] = model.probabilities(h, volts, ArrayConfig())[0]
        assert np.all(np.diff(p[corner], axis=0) <= 1e-15), "must not grow with V"
    assert np.all(p["slow"] >= p["typical"] - 1e-15) and np.all(p["typical"] >= p["fast"] - 1e-15)
    assert p["slow"].max() > p["typical"].max() and (p["slow"] > p["typical"]).any()


@pytest.mark.parametrize("call,match", [
    (lambda: T.TechParams(corner="worst"), "unknown process corner 'worst'"),
    (lambda: T.TechParams(sigma_vth_die=0.5), r"sigma_vth_die must be in \[0, 0.1\] V"),
    (lambda: T.error_probabilities([0.5], adder="carry-skip"), "unknown adder 'carry-skip'"),
    (lambda: T.error_probabilities([0.5], adder="kogge-stone", model="static"), "knows the ripple adder only"),
    (lambda: T.error_probabilities([0.35], corner="slow"), "outside the timing model's range.*slow corner"),
])
def test_bad_circuit_choices_are_a_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_timing_command_takes_the_adder_and_corner(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["timing", "--adder", "brent-kung", "--corner", "fast", "--vmin", "0.45", "--vmax", "0.5",
                 "--step", "0.05", "--out", str(out), "--plot", ""]) == 0
    assert "fast corner, brent-kung adder" in capsys.readouterr().out
    params = T.load_table(str(out)).params
    assert params["adder"] == "brent-kung" and params["tech"]["corner"] == "fast"
    assert main(["timing", "--timing-model", "static-uniform", "--adder", "kogge-stone", "--out", "",
                 "--plot", ""]) == 2
    assert "the static timing model knows the ripple adder only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["timing", "--corner", "worst"])
