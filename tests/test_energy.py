"""The energy model's identities and closed forms."""
import math

import pytest

from pyvs.energy import EnergyParams, inference_energy
from pyvs.hardware import ArrayConfig


def test_energy_model():
    p, a = EnergyParams(), ArrayConfig()
    macs, cycles = 3e8, 4e6
    base = inference_energy(0.9, macs, cycles, 0, 0, p, a)
    # nominal, no protection: the baseline, by its definition
    assert base["total"] == base["dynamic"] + base["leakage"]
    assert base["dynamic"] == pytest.approx(macs * 0.3e-12)
    e = [inference_energy(v, macs, cycles, 0, 0, p, a)["total"] for v in (0.9, 0.8, 0.7, 0.6, 0.5)]
    assert all(x > y for x, y in zip(e, e[1:])), "energy must fall with V"
    for v in (0.9, 0.5):
        e0 = inference_energy(v, macs, cycles, 0, 0, p, a)
        for k in (1, 8, 32):
            ek = inference_energy(v, macs, cycles, k, 0, p, a)
            assert ek["total"] - e0["total"] == pytest.approx(k * 0.01 * (e0["dynamic"] + e0["leakage"]))
            assert ek["razor"] == pytest.approx(k * 0.01 * (e0["dynamic"] + e0["leakage"]))
    # a replay costs one MAC plus one cycle of array leakage
    r = inference_energy(0.5, macs, cycles, 0, 1000, p, a)
    e0 = inference_energy(0.5, macs, cycles, 0, 0, p, a)
    leak_cycle = p.leak_power_array(0.5, a) / (a.freq_ghz * 1e9)
    assert r["total"] - e0["total"] == pytest.approx(1000 * (p.e_mac(0.5, a) + leak_cycle))
    # closed forms
    assert p.e_mac(0.5, a) == pytest.approx(0.3e-12 * (0.5 / 0.9) ** 2)
    assert p.leak_scale(0.5, a) == pytest.approx(0.5 / 0.9 * math.exp(-0.1 * 0.4 / (1.5 * 0.02585)))


def test_the_nominal_supply_is_the_arrays():
    # One nominal voltage: moving the array's moves the energy baseline, and
    # the timing model's calibration point with it.
    p = EnergyParams()
    assert not hasattr(p, "v_nominal")
    low = ArrayConfig(v_nominal=0.8)
    assert p.e_mac(0.8, low) == pytest.approx(p.e_mac_nom) and p.leak_scale(0.8, low) == pytest.approx(1.0)
    import pyvs.timing as T
    assert not hasattr(T.TechParams(), "vdd_nominal")
    a = T.error_probabilities([0.5], ArrayConfig(v_nominal=0.9), model="static")
    b = T.error_probabilities([0.5], ArrayConfig(v_nominal=0.8), model="static")
    assert float(b.sum()) < float(a.sum())  # signed off at 0.8 V, 0.5 V is a smaller step down
