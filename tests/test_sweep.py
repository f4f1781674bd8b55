"""The resumable sweep: automatic bit selection on a planted bit, kill and
resume, rescoring, and bad input."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from pyvs.latency import ArrayConfig
from pyvs.sweep import sweep

from tinynet import tiny

HERE = os.path.dirname(os.path.abspath(__file__))


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
    by = {(r.voltage, r.strategy): r for r in rows}
    assert by[(0.8, "none")].agree < 1.0, "the planted bit must hurt"
    auto = by[(0.8, "auto")]
    assert auto.mask == 1 << 24, auto.protect  # bit 24, and not the harmless bit 1
    assert auto.agree_loss <= 0.0 and auto.top1_loss <= 0.0
    assert auto.corrected > 0 and auto.injected > 0  # bit 1 still flips, harmlessly
    # zero budget at nominal voltage: nothing to protect
    assert by[(0.9, "auto")].mask == 0
    assert by[(0.9, "auto")].latency_overhead == 0 and by[(0.9, "none")].energy_saving == 0


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
        assert b.energy_saving == pytest.approx(a.energy_saving)
        assert b.latency_overhead == pytest.approx(a.latency_overhead)
    big = rescore(str(tmp_path), ArrayConfig(batch=8))
    assert all(b.top1 == a.top1 for a, b in zip(rows, big))
    corrected = [r for r in big if r.corrected_per_image > 0]
    assert corrected and all(b.latency_overhead > a.latency_overhead
                             for a, b in zip(rows, big) if a.corrected_per_image > 0)


@pytest.mark.needs_cuda
def test_sweep_on_the_gpu_equals_the_cpu(tmp_path):
    q, batches = _setup(32)
    rows = {}
    for device in ("cpu", "cuda"):
        got = sweep(q.to(device), batches, str(tmp_path / device), [0.9, 0.8], ["none", "msb8", "auto"],
                    seeds=[0, 1], probabilities=planted, device=device, progress=False)
        rows[device] = [{k: v for k, v in vars(r).items() if k != "seconds"} for r in got]
    assert rows["cpu"] == rows["cuda"]


def test_a_folder_is_never_resumed_on_other_data_or_another_model(tmp_path):
    q, batches = _setup(32)
    sweep(q, batches, str(tmp_path), [0.9], ["none"], probabilities=planted, progress=False)
    # The same images in other batches: the same data, resumed.
    rebatched = [(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))]
    assert len(sweep(q, rebatched, str(tmp_path), [0.9], ["none"], probabilities=planted,
                     progress=False)) == 1
    other = [(x.flip(0), y) for x, y in batches]  # same count, other images
    with pytest.raises(ValueError, match="holds a sweep with other data"):
        sweep(q, other, str(tmp_path), [0.9], ["none"], probabilities=planted, progress=False)
    q2, _ = _setup(32)
    q2.fc.weight_q.view(-1)[0] += 1
    with pytest.raises(ValueError, match="holds a sweep with other model"):
        sweep(q2, batches, str(tmp_path), [0.9], ["none"], probabilities=planted, progress=False)


def test_auto_point_counts_every_search_step(tmp_path):
    import json
    q, batches = _setup(16)
    rows = sweep(q, batches, str(tmp_path), [0.8], ["auto"], probabilities=planted, budget=0.0,
                 progress=False)
    steps = json.loads((tmp_path / "search.json").read_text())
    assert rows[0].evaluations == len(steps) > 1
    assert rows[0].seconds == pytest.approx(sum(s["seconds"] for s in steps))


def test_progress_counts_evaluations_not_points():
    from pyvs.experiment import Experiment
    from pyvs.sweep import _evaluations_ahead
    q, batches = _setup(16)
    exp = Experiment(q, batches, progress=False)
    p_of = {v: planted([v])[0] for v in (0.9, 0.8)}
    # 0.9 V: no bit errs, nothing to evaluate; 0.8 V: none and msb8 differ on
    # the erring bits (1, 24), msb8 and msb16 do not; auto: log2(2 + 1) + 1.
    pending = [(0.9, "none", 0), (0.9, "auto", 0), (0.8, "none", 0), (0.8, "msb8", 0), (0.8, "msb16", 0),
               (0.8, "auto", 0)]
    assert _evaluations_ahead(exp, pending, p_of) == 2 + 3
