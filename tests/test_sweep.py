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

from pyvs.experiment import Experiment
from pyvs.hardware import ArrayConfig
from pyvs.strategies import Budget
from pyvs.sweep import Grid, sweep
from pyvs.timing import TimingSpec

from tinynet import tiny

HERE = os.path.dirname(os.path.abspath(__file__))


def planted(volts):
    """Bit 24 errs often below 0.85 V (harmful); bit 1 errs as often (harmless)."""
    p = torch.zeros(len(volts), 32, dtype=torch.float64)
    for i, v in enumerate(volts):
        if v < 0.85:
            p[i, 24] = p[i, 1] = 2e-3
    return p


def run_sweep(q, batches, out, voltages, strategies, seeds=(0,), rates=planted, budget=0.003, device="cpu",
              **kw):
    """The sweep of the tiny network at hand-made rates (a test's one-liner)."""
    exp = Experiment(q, batches, timing=TimingSpec.custom(rates), device=device, progress=False, **kw)
    return sweep(exp, Grid(voltages, strategies, seeds), Budget(accuracy=budget), out)


def _setup(n=48):
    _, _, q = tiny()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    return q, [(images[i:i + 16], labels[i:i + 16]) for i in range(0, n, 16)]


def test_auto_protects_the_planted_bit(tmp_path):
    q, batches = _setup()
    rows = run_sweep(q, batches, str(tmp_path), [0.9, 0.8], ["none", "auto"], budget=0.0)
    by = {(r.voltage, r.strategy): r for r in rows}
    assert by[(0.8, "none")].accuracy.agree < 1.0, "the planted bit must hurt"
    auto = by[(0.8, "auto")]
    assert auto.mask == 1 << 24, auto.protect  # bit 24, and not the harmless bit 1
    assert auto.accuracy.agree_loss <= 0.0 and auto.accuracy.top1_loss <= 0.0
    assert auto.counts.corrected > 0 and auto.counts.injected > 0  # bit 1 still flips, harmlessly
    # zero budget at nominal voltage: nothing to protect
    assert by[(0.9, "auto")].mask == 0
    assert by[(0.9, "auto")].costs.latency_overhead == 0 and by[(0.9, "none")].costs.energy_saving == 0


def test_auto_drop_searches_with_drops_and_records_them(tmp_path):
    # The planted bit 24 dropped instead of flipped: at most one product lost
    # per event, harmless here; the search's steps are 'auto-drop-search'.
    q, batches = _setup()
    rows = run_sweep(q, batches, str(tmp_path), [0.8], ["auto", "auto-drop", "msb8-drop"], budget=0.0)
    by = {r.strategy: r for r in rows}
    assert by["auto-drop"].on_error == by["msb8-drop"].on_error == "drop" and by["auto"].on_error == "replay"
    assert by["auto-drop"].mask == by["auto"].mask == 1 << 24
    assert by["auto-drop"].counts.corrected_per_bit[24] == by["auto"].counts.corrected_per_bit[24] > 0
    assert by["auto-drop"].costs.latency_overhead == 0 < by["auto"].costs.latency_overhead
    with open(os.path.join(tmp_path, "search.json")) as f:
        steps = {r["strategy"]: r["on_error"] for r in json.load(f)}
    assert steps == {"auto-search": "replay", "auto-drop-search": "drop"}


# ---- resume after a kill ------------------------------------------------------

SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {here!r})
    from test_sweep import _setup, run_sweep
    q, batches = _setup()
    run_sweep(q, batches, sys.argv[1], [0.9, 0.8, 0.7], ["none", "msb8", "all"], seeds=[0, 1])
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
    (dict(strategies=[]), "no protection strategy"),
    (dict(seeds=[]), "no seed"),
    (dict(budget=-0.1), "Budget.accuracy must be a fraction in"),
])
def test_bad_sweep_input(tmp_path, kw, match):
    q, batches = _setup(16)
    args = dict(voltages=[0.9], strategies=["none"], budget=0.003)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        run_sweep(q, batches, str(tmp_path / "out"), **args)


def test_sweep_takes_typed_arguments(tmp_path):
    q, batches = _setup(16)
    exp = Experiment(q, batches, timing=TimingSpec.custom(planted), progress=False)
    with pytest.raises(TypeError, match="sweep.experiment, grid: Grid, budget: Budget"):
        sweep(exp, Grid([0.9]), 0.3, str(tmp_path))  # a bare number is not a budget


def test_unwritable_output_folder(tmp_path):
    q, batches = _setup(16)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="cannot write to the output folder"):
        run_sweep(q, batches, str(blocker / "out"), [0.9], ["none"])


def test_rescore_reproduces_and_changes_only_the_models(tmp_path):
    from pyvs.sweep import rescore
    q, batches = _setup(16)
    rows = run_sweep(q, batches, str(tmp_path), [0.9, 0.8], ["none", "all"])
    same = rescore(str(tmp_path), ArrayConfig())
    for a, b in zip(rows, same):
        assert b.costs.energy_saving == pytest.approx(a.costs.energy_saving)
        assert b.costs.latency_overhead == pytest.approx(a.costs.latency_overhead)
    big = rescore(str(tmp_path), ArrayConfig(batch=8))
    assert all(b.accuracy == a.accuracy and b.counts == a.counts for a, b in zip(rows, big))
    corrected = [r for r in big if r.counts.corrected_per_image > 0]
    assert corrected and all(b.costs.latency_overhead > a.costs.latency_overhead
                             for a, b in zip(rows, big) if a.counts.corrected_per_image > 0)


@pytest.mark.needs_cuda
def test_sweep_on_the_gpu_equals_the_cpu(tmp_path):
    q, batches = _setup(32)
    rows = {}
    for device in ("cpu", "cuda"):
        got = run_sweep(q.to(device), batches, str(tmp_path / device), [0.9, 0.8], ["none", "msb8", "auto"],
                        seeds=[0, 1], device=device)
        rows[device] = [{k: v for k, v in r.row().items() if k != "seconds"} for r in got]
    assert rows["cpu"] == rows["cuda"]


def test_a_folder_from_before_the_switching_costs_resumes_but_not_one_without_data_movement(tmp_path):
    # Fields added to the array and energy models later: those that price only
    # what an older folder cannot hold (changes of supply between layers) are
    # not a reason to refuse it; one that changes its energies is.
    q, batches = _setup(32)
    run_sweep(q, batches, str(tmp_path), [0.9], ["none"])
    path = tmp_path / "meta.json"
    meta = json.loads(path.read_text())
    del meta["array"]["dvfs_switch_ns"], meta["energy"]["supply_decap_f"]
    path.write_text(json.dumps(meta))
    assert len(run_sweep(q, batches, str(tmp_path), [0.9, 0.8], ["none"])) == 2
    meta = json.loads(path.read_text())
    del meta["energy"]["e_bit_hop"]
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="holds a sweep with other energy"):
        run_sweep(q, batches, str(tmp_path), [0.9], ["none"])


def test_a_folder_from_before_the_process_corners_resumes_only_at_the_typical_corner(tmp_path):
    # The technology's corner fields came later: a folder without them was
    # made at the typical corner, whatever the die-to-die sigma.
    q, batches = _setup(16)

    def run(volts, **tech):
        exp = Experiment(q, batches, timing=TimingSpec.named("event-uniform", **tech), progress=False)
        return sweep(exp, Grid(volts, ["none"], (0,)), Budget(), str(tmp_path))
    run([0.9])
    path = tmp_path / "meta.json"
    meta = json.loads(path.read_text())
    del meta["timing"]["tech"]["corner"], meta["timing"]["tech"]["sigma_vth_die"]
    path.write_text(json.dumps(meta))
    assert len(run([0.9, 0.8], sigma_vth_die=0.03)) == 2
    meta = json.loads(path.read_text())
    del meta["timing"]["tech"]["corner"]
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="holds a sweep with other timing"):
        run([0.9], corner="slow")


def test_folders_from_before_resume_only_where_their_results_stand(tmp_path):
    # A folder from before conditioned injection (no "injection": it was
    # independent) resumes; one from before the capture took pairs across
    # image boundaries (no "pairs_across_images", nor candidates_per_image)
    # holds other pairs, and is refused.
    q, batches = _setup(16)

    def run(out):
        spec = TimingSpec.named("event", calibration_images=2, pairs_per_layer=512)
        return sweep(Experiment(q, batches, timing=spec, progress=False), Grid([0.9], ["none"], (0,)), Budget(),
                     str(tmp_path / out))
    for out, old in (("before_injection", ("injection",)),
                     ("before_boundaries", ("injection", "pairs_across_images", "candidates_per_image"))):
        run(out)
        path = tmp_path / out / "meta.json"
        meta = json.loads(path.read_text())
        for key in old:
            meta["timing"].pop(key, None)
            meta["timing"]["calibration"].pop(key, None)
        path.write_text(json.dumps(meta))
    assert len(run("before_injection")) == 1
    with pytest.raises(ValueError, match="holds a sweep with other timing"):
        run("before_boundaries")


def test_a_folder_is_never_resumed_on_other_data_or_another_model(tmp_path):
    q, batches = _setup(32)
    run_sweep(q, batches, str(tmp_path), [0.9], ["none"])
    # The same images in other batches: the same data, resumed.
    rebatched = [(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))]
    assert len(run_sweep(q, rebatched, str(tmp_path), [0.9], ["none"])) == 1
    other = [(x.flip(0), y) for x, y in batches]  # same count, other images
    with pytest.raises(ValueError, match="holds a sweep with other data"):
        run_sweep(q, other, str(tmp_path), [0.9], ["none"])
    q2, _ = _setup(32)
    q2.fc.weight_q.view(-1)[0] += 1
    with pytest.raises(ValueError, match="holds a sweep with other model"):
        run_sweep(q2, batches, str(tmp_path), [0.9], ["none"])


def test_a_new_grid_in_an_old_folder_adds_its_points_and_meta_records_the_union(tmp_path):
    import json
    q, batches = _setup(16)
    run_sweep(q, batches, str(tmp_path), [0.9], ["none"])
    rows = run_sweep(q, batches, str(tmp_path), [0.8], ["none", "all"], seeds=[1])
    assert [r.key for r in rows] == [(0.9, "none", 0), (0.8, "none", 1), (0.8, "all", 1)]
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["voltages"] == [0.8, 0.9] and meta["strategies"] == ["all", "none"] and meta["seeds"] == [0, 1]
    from pyvs.timing import load_table
    assert load_table(str(tmp_path / "error_table.json")).voltages == [0.8, 0.9]


def test_auto_point_counts_every_search_step(tmp_path):
    import json
    q, batches = _setup(16)
    rows = run_sweep(q, batches, str(tmp_path), [0.8], ["auto"], budget=0.0)
    steps = json.loads((tmp_path / "search.json").read_text())
    assert rows[0].evaluations == len(steps) > 1
    assert rows[0].seconds == pytest.approx(sum(s["seconds"] for s in steps))


def test_progress_counts_evaluations_not_points():
    from pyvs.sweep import _evaluations_ahead
    q, batches = _setup(16)
    exp = Experiment(q, batches, progress=False)
    p_of = {v: planted([v])[0] for v in (0.9, 0.8)}
    # 0.9 V: no bit errs, nothing to evaluate; 0.8 V: none and msb8 differ on
    # the erring bits (1, 24), msb8 and msb16 do not; auto: log2(2 + 1) + 1.
    pending = [(0.9, "none", 0), (0.9, "auto", 0), (0.8, "none", 0), (0.8, "msb8", 0), (0.8, "msb16", 0),
               (0.8, "auto", 0)]
    assert _evaluations_ahead(exp, pending, p_of) == 2 + 3


@pytest.mark.parametrize("damage", [b"", b"garbage, not a torch file", None])
def test_a_damaged_golden_run_is_redone_on_resume(tmp_path, damage):
    q, batches = _setup(16)
    first = run_sweep(q, batches, str(tmp_path), [0.9, 0.8], ["none"])
    golden = tmp_path / "golden.pt"
    if damage is None:
        golden.write_bytes(golden.read_bytes()[:200])  # truncated
    else:
        golden.write_bytes(damage)
    with pytest.warns(UserWarning, match="golden.pt' is damaged .*the golden run is done again"):
        again = run_sweep(q, batches, str(tmp_path), [0.9, 0.8, 0.7], ["none"])
    assert [r.row() for r in again[:2]] == [r.row() for r in first]
    assert torch.load(golden, weights_only=True)["clean"]["n"] == 16
