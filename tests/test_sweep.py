"""Latency and energy models, the resumable sweep, automatic bit selection,
the report, and bad input."""
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from pyvs.energy import EnergyParams, inference_energy
from pyvs.latency import ArrayConfig, gemm_cycles, latency_overhead, model_cycles
from pyvs.selection import bit_ranking, pareto_front, parse_strategy
from pyvs.sweep import sweep

from tinynet import tiny

HERE = os.path.dirname(os.path.abspath(__file__))


# ---- latency ----------------------------------------------------------------

def cycles_by_hand(M, K, N, G, R, C, load=True):
    """Tile by tile, as the array runs: every (group block, K block, N block)
    tile loads R weight rows, streams M rows and drains R + C - 2 cycles."""
    per_tile = (R if load else 0) + M + R + C - 2
    if K <= R and N <= C:
        pack = max(1, min(R // K, C // N))
    else:
        pack = 1
    total, g = 0, 0
    while g < G:
        g += pack
        for _k0 in range(0, K, R):
            for _n0 in range(0, N, C):
                total += per_tile
    return total


@pytest.mark.parametrize("M,K,N,G,R,C", [
    (10, 6, 5, 1, 4, 4),        # 2 x 2 tiles of 4 + 10 + 6 = 20 cycles: 80
    (1, 1, 1, 1, 1, 1),
    (12544, 27, 32, 1, 256, 256),
    (3136, 9, 1, 144, 256, 256),  # depthwise: 28 groups per tile
    (49, 1280, 1000, 1, 256, 256),
    (7, 300, 3, 5, 16, 8),
])
def test_gemm_cycles_by_hand(M, K, N, G, R, C):
    a = ArrayConfig(rows=R, cols=C)
    assert gemm_cycles(M, K, N, G, a) == cycles_by_hand(M, K, N, G, R, C)
    b = ArrayConfig(rows=R, cols=C, overlap_weight_load=True)
    assert gemm_cycles(M, K, N, G, b) == cycles_by_hand(M, K, N, G, R, C, load=False)


def test_first_case_is_eighty_cycles():
    assert gemm_cycles(10, 6, 5, 1, ArrayConfig(rows=4, cols=4)) == 80


def test_batch_shares_weight_loads():
    shapes = {"a": (1, 10, 6, 5)}
    one = model_cycles(shapes, ArrayConfig(rows=4, cols=4))["a"]
    four = model_cycles(shapes, ArrayConfig(rows=4, cols=4, batch=4))["a"]
    assert one == 80 and four == 4 * (4 + 40 + 6) / 4  # 4 tiles of (load + 4*10 rows + drain), per image


def test_latency_overhead():
    base = model_cycles({"a": (1, 10, 6, 5), "b": (2, 4, 3, 3)}, ArrayConfig(rows=4, cols=4))
    per_layer, total = latency_overhead(base, {}, ArrayConfig(rows=4, cols=4))
    assert total == 0 and all(v == 0 for v in per_layer.values())
    per_layer, total = latency_overhead(base, {"a": 8.0}, ArrayConfig(rows=4, cols=4, replay_cycles=2))
    assert per_layer["a"] == 16 / base["a"] and per_layer["b"] == 0
    assert total == 16 / (base["a"] + base["b"])


# ---- energy -----------------------------------------------------------------

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
    assert r["total"] - e0["total"] == pytest.approx(1000 * (p.e_mac(0.5) + leak_cycle))
    # closed forms
    assert p.e_mac(0.5) == pytest.approx(0.3e-12 * (0.5 / 0.9) ** 2)
    assert p.leak_scale(0.5) == pytest.approx(0.5 / 0.9 * math.exp(-0.1 * 0.4 / (1.5 * 0.02585)))


# ---- strategies and the search ------------------------------------------------

def test_strategies():
    assert parse_strategy("none", 32) == 0
    assert parse_strategy("all", 16) == 0xFFFF
    assert parse_strategy("msb8", 32) == 0xFF000000
    assert parse_strategy("0x00f0", 32) == 0xF0
    assert parse_strategy("auto", 32) is None
    for bad, match in [("magic", "unknown strategy"), ("msb40", "at most 32"),
                       ("0x1ffffffff", "wider than"), ("0xzz", "not a hexadecimal")]:
        with pytest.raises(ValueError, match=match):
            parse_strategy(bad, 32)


def test_bit_ranking_and_pareto():
    p = torch.zeros(32, dtype=torch.float64)
    p[3], p[20], p[25] = 0.5, 1e-6, 1e-3
    assert bit_ranking(p) == [25, 3, 20]  # 1e-3*2^25 > 0.5*2^3 > 1e-6*2^20
    assert pareto_front([(0.5, 0.1), (0.6, 0.1), (0.4, 0.0), (0.6, 0.2)]) == [2, 1]


def planted(volts):
    """Bit 24 errs often below 0.85 V (harmful); bit 1 errs as often (harmless)."""
    p = torch.zeros(len(volts), 32, dtype=torch.float64)
    for i, v in enumerate(volts):
        if v < 0.85:
            p[i, 24] = p[i, 1] = 2e-3
    return p


def _setup(n=48):
    _, _, q = tiny()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    return q, [(images[i:i + 16], labels[i:i + 16]) for i in range(0, n, 16)]


def test_auto_protects_the_planted_bit(tmp_path):
    q, batches = _setup()
    rows = sweep(q, batches, str(tmp_path), [0.9, 0.8], ["none", "auto"], probabilities=planted,
                 budget=0.0, progress=False)
    by = {(r["voltage"], r["strategy"]): r for r in rows}
    assert by[(0.8, "none")]["agree"] < 1.0, "the planted bit must hurt"
    auto = by[(0.8, "auto")]
    assert int(auto["protect"], 16) == 1 << 24, auto["protect"]  # bit 24, and not the harmless bit 1
    assert auto["agree_loss"] <= 0.0 and auto["top1_loss"] <= 0.0
    assert auto["corrected"] > 0 and auto["injected"] > 0  # bit 1 still flips, harmlessly
    # zero budget at nominal voltage: nothing to protect
    assert int(by[(0.9, "auto")]["protect"], 16) == 0
    assert by[(0.9, "auto")]["latency_overhead"] == 0 and by[(0.9, "none")]["energy_saving"] == 0


# ---- resume after a kill ------------------------------------------------------

SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {here!r})
    from test_sweep import _setup, planted
    from pyvs.sweep import sweep
    q, batches = _setup()
    sweep(q, batches, sys.argv[1], [0.9, 0.8, 0.7], ["none", "msb8", "all"], seeds=[0, 1],
          probabilities=planted, progress=False)
""")


def _rows(path):
    with open(os.path.join(path, "results.json")) as f:
        rows = json.load(f)
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.slow
def test_sweep_resumes_after_a_kill(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(here=HERE))
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = dict(os.environ, PYVS_SWEEP_PAUSE="1.0")
    proc = subprocess.Popen([sys.executable, str(script), str(killed)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if len(_rows(killed)) >= 3:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = _rows(killed)
    assert 3 <= len(partial) < 18, len(partial)
    subprocess.run([sys.executable, str(script), str(killed)], check=True)
    subprocess.run([sys.executable, str(script), str(whole)], check=True)
    resumed, reference = _rows(killed), _rows(whole)
    assert len(resumed) == 18
    assert resumed == reference
    keys = [(r["voltage"], r["strategy"], r["seed"]) for r in resumed]
    assert len(set(keys)) == len(keys)
    with open(killed / "results.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 18


def test_report(tmp_path):
    from pyvs.report import report
    q, batches = _setup(16)
    sweep(q, batches, str(tmp_path), [0.9, 0.8], ["none", "all", "auto"], probabilities=planted,
          progress=False)
    paths = report(str(tmp_path))
    for p in paths:
        assert os.path.getsize(p) > 0
    assert {os.path.basename(p) for p in paths} >= {"accuracy_vs_voltage.png", "energy_saving.png",
                                                     "latency_overhead.png", "pareto.png", "results.md"}
    assert "| 0.800 | auto |" in open(os.path.join(tmp_path, "results.md")).read()


# ---- bad input --------------------------------------------------------------

@pytest.mark.parametrize("kw,match", [
    (dict(voltages=[]), "voltage grid is empty"),
    (dict(voltages=["a"]), "not a list of numbers"),
    (dict(voltages=[0.9, 0.9]), "repeated"),
    (dict(voltages=[0.2]), "outside the timing model's range"),
    (dict(voltages=[1.5]), "outside the timing model's range"),
    (dict(strategies=["magic"]), "unknown strategy"),
    (dict(budget=-0.1), "budget must be >= 0"),
])
def test_bad_sweep_input(tmp_path, kw, match):
    q, batches = _setup(16)
    args = dict(voltages=[0.9], strategies=["none"], budget=0.003)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        sweep(q, batches, str(tmp_path / "out"), progress=False, **args)


def test_unwritable_output_folder(tmp_path):
    q, batches = _setup(16)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot write to the output folder"):
        sweep(q, batches, str(blocker / "out"), [0.9], ["none"], progress=False)


def test_rescore_reproduces_and_changes_only_the_models(tmp_path):
    from pyvs.sweep import rescore
    q, batches = _setup(16)
    rows = sweep(q, batches, str(tmp_path), [0.9, 0.8], ["none", "all"], probabilities=planted,
                 progress=False)
    same = rescore(str(tmp_path), ArrayConfig())
    for a, b in zip(rows, same):
        assert b["energy_saving"] == pytest.approx(a["energy_saving"])
        assert b["latency_overhead"] == pytest.approx(a["latency_overhead"])
    big = rescore(str(tmp_path), ArrayConfig(batch=8))
    assert all(b["top1"] == a["top1"] for a, b in zip(rows, big))
    corrected = [r for r in big if r["corrected_per_image"] > 0]
    assert corrected and all(b["latency_overhead"] > a["latency_overhead"]
                             for a, b in zip(rows, big) if a["corrected_per_image"] > 0)
