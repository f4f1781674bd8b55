"""Per-layer voltage schedules: resolving them, what a change of supply
costs, and a model run with each layer at its own supply."""
import dataclasses
import json

import pytest
import torch

from pyvs.costs import Workload
from pyvs.energy import EnergyParams
from pyvs.experiment import Experiment
from pyvs.hardware import ArrayConfig
from pyvs.nn import layer_kinds, set_schedule, systolic_layers
from pyvs.schedule import describe, mean_voltage, parse, resolve, transitions
from pyvs.timing import TimingSpec

from tinynet import batched, tiny

KINDS = {"stem.0": "stem", "dw.0": "depthwise", "pw": "expand", "grouped": "grouped", "fc": "linear"}


def test_the_tiny_network_has_every_kind_it_should():
    _, _, q = tiny()
    assert layer_kinds(q) == KINDS


def test_resolve_takes_kinds_names_and_a_default():
    assert resolve(0.5, KINDS) == dict.fromkeys(KINDS, 0.5)
    s = resolve({"default": 0.52, "depthwise": 0.51, "fc": 0.6, "linear": 0.7}, KINDS)
    assert s == {"stem.0": 0.52, "dw.0": 0.51, "pw": 0.52, "grouped": 0.52, "fc": 0.6}  # a name beats its kind
    assert list(s) == list(KINDS)  # the model's order
    for spec, match in [({"project": 0.5}, "neither layers nor layer kinds"), ({"stem": 0.5}, "no voltage for 4"),
                        ({"default": -1}, "positive number of volts"), ({"default": True}, "positive number"),
                        ({}, "non-empty dict"), ("0.5", "non-empty dict"), (True, "a voltage or a dict")]:
        with pytest.raises(ValueError, match=match):
            resolve(spec, KINDS)


def test_transitions_count_the_way_back_to_the_first_layer():
    assert transitions({"a": 0.5, "b": 0.5, "c": 0.52}) == [(0.5, 0.52), (0.52, 0.5)]
    assert transitions({"a": 0.5, "b": 0.5}) == []
    assert transitions({"a": 0.5, "b": 0.52, "c": 0.5}) == [(0.5, 0.52), (0.52, 0.5)]
    assert mean_voltage({"a": 0.5, "b": 0.6}, {"a": 3, "b": 1}) == pytest.approx(0.525)
    assert describe({"a": 0.5, "b": 0.6, "c": 0.55}, {"a": "x", "b": "x", "c": "y"}) == "x 0.5-0.6, y 0.55"


def test_parse_reads_the_command_line_and_json(tmp_path):
    assert parse("expand=0.51, default=0.52") == {"expand": 0.51, "default": 0.52}
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"features.1.conv.1": 0.5}))
    assert parse(str(path)) == {"features.1.conv.1": 0.5}
    for text in ("expand", "expand=x", "=0.5", ""):
        with pytest.raises(ValueError):
            parse(text)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        parse(str(path))


SHAPES = {"a": (1, 196, 27, 32), "b": (32, 196, 9, 1), "c": (1, 196, 32, 64), "d": (1, 1, 64, 10)}


@pytest.mark.parametrize("gating", [0.0, 0.9])
def test_one_voltage_for_every_layer_costs_what_the_global_point_costs(gating):
    w = Workload(SHAPES, ArrayConfig(rows=16, cols=16), EnergyParams(power_gating=gating))
    replays = {"a": 3.0, "c": 0.5}
    glob, sched = w.costs(0.52, 2, replays), w.costs(dict.fromkeys(SHAPES, 0.52), 2, replays)
    for f in dataclasses.fields(glob):
        assert getattr(sched, f.name) == pytest.approx(getattr(glob, f.name), rel=1e-12, abs=1e-30), f.name
    assert sched.switches == sched.switch_overhead == sched.energy_switch_j == 0


@pytest.mark.parametrize("batch", [1, 4])
def test_each_change_of_supply_waits_and_moves_charge(batch):
    array = ArrayConfig(rows=16, cols=16, freq_ghz=0.5, dvfs_switch_ns=30.0, batch=batch)
    energy = EnergyParams(supply_decap_f=1e-7)
    w = Workload(SHAPES, array, energy)
    s = {"a": 0.5, "b": 0.55, "c": 0.55, "d": 0.5}  # two changes: a->b and c->d (d->a is none)
    k = w.costs(s, 0, {})
    wait = 30.0 * 0.5 / batch  # cycles per change per image
    assert k.switches == 2 / batch and k.switch_overhead == pytest.approx(2 * wait / w.cycles)
    assert k.latency_overhead == k.switch_overhead  # no replays
    assert k.energy_switch_j == pytest.approx(2 * 1e-7 * (0.55 ** 2 - 0.5 ** 2) / 2 / batch)
    # Every layer's energy at its own voltage, the waits as idle cycles of the layer entered.
    free = Workload(SHAPES, dataclasses.replace(array, dvfs_switch_ns=0.0), EnergyParams(supply_decap_f=0.0))
    parts = {v: free.costs(v, 0, {}) for v in (0.5, 0.55)}
    assert free.costs(s, 0, {}).energy_j < parts[0.55].energy_j and free.costs(s, 0, {}).energy_j > parts[0.5].energy_j
    leak_wait = energy.leak_power_array(0.55, array) * wait / (0.5e9) + energy.leak_power_array(0.5, array) * wait / 0.5e9
    assert k.energy_j == pytest.approx(free.costs(s, 0, {}).energy_j + leak_wait + k.energy_switch_j, rel=1e-12)
    with pytest.raises(ValueError, match="every layer of the workload"):
        w.costs({"a": 0.5}, 0, {})


def planted(volts):
    """Every bit 24 and 2 err at 0.5 V; nothing errs at 0.9 V."""
    p = torch.zeros(len(volts), 32, dtype=torch.float64)
    for i, v in enumerate(volts):
        if v < 0.85:
            p[i, 24] = p[i, 2] = 1e-3
    return p


def test_a_model_runs_each_layer_at_its_own_supply():
    _, images, q = tiny()
    exp = Experiment(q, batched(images), array=ArrayConfig(rows=16), timing=TimingSpec.custom(planted),
                     progress=False)
    s = resolve({"default": 0.9, "expand": 0.5}, exp.kinds)
    r = exp.schedule_point(s, 0, seed=1, strategy="schedule")
    assert r.schedule == s and {n for n, e in r.counts.injected_per_layer.items() if e} == {"pw"}
    assert r.counts.injected > 0
    assert r.voltage == pytest.approx(mean_voltage(s, exp.workload.macs_by_layer))
    assert r.costs.switches == 2 and r.costs.switch_overhead > 0
    # The same layer at the same voltage, whether it is scheduled or set by hand.
    same = exp.schedule_point(resolve(0.5, exp.kinds), 0, seed=1, strategy="all at 0.5")
    glob = exp.point(0.5, exp.error_table([0.5]).rates(0.5), 0, seed=1, strategy="global")
    assert same.accuracy == glob.accuracy and same.counts == glob.counts
    assert same.costs.energy_j == pytest.approx(glob.costs.energy_j, rel=1e-12)
    with pytest.raises(ValueError, match="every systolic layer a voltage"):
        exp.schedule_point({"pw": 0.5}, 0, 1, "x")


def test_set_schedule_gives_each_layer_the_rates_of_its_voltage():
    _, _, q = tiny()
    table = TimingSpec.custom(planted).table([0.5, 0.9], ArrayConfig(), 32)
    s = set_schedule(q, table, {"default": 0.9, "pw": 0.5}, protect=1 << 24, seed=3)
    layers = dict(systolic_layers(q))
    assert s["pw"] == 0.5 and float(layers["pw"].fault.p_bits[24]) == 1e-3
    assert float(layers["fc"].fault.p_bits.sum()) == 0 and layers["pw"].fault.protect == 1 << 24
    with pytest.raises(ValueError, match="not on the table's grid"):
        set_schedule(q, table, 0.6)
