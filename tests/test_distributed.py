"""Scale-out: a sweep under torchrun (2 processes, gloo on loopback) gives
one process's results bit for bit, with an uneven split of the images;
a killed rank stops the job and a rerun, with any world size, resumes;
mismatched ranks and a failing rank stop the whole job with a message."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pyvs.distributed import World

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "dist_sweep.py")


def torchrun(out, nproc, env=None, wait=True, n=29):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           SCRIPT, str(out), str(n)]
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return proc
    out_text, _ = proc.communicate(timeout=240)
    return proc.returncode, out_text


def one_process(out, n=29):
    subprocess.run([sys.executable, SCRIPT, str(out), str(n)], check=True, timeout=240)


def rows(folder):
    with open(os.path.join(folder, "results.json")) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in json.load(f)]


def test_shards_are_contiguous_and_cover_every_image():
    for n in (0, 1, 7, 29, 100):
        for size in (1, 2, 3, 8):
            spans = [World(r, size).shard(n) for r in range(size)]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            assert max(e - s for s, e in spans) - min(e - s for s, e in spans) <= 1


@pytest.mark.slow
def test_two_processes_give_one_process_results(tmp_path):
    one_process(tmp_path / "one")
    code, log = torchrun(tmp_path / "two", 2)
    assert code == 0, log
    assert rows(tmp_path / "two") == rows(tmp_path / "one")  # 29 images: shards of 14 and 15
    import csv
    with open(tmp_path / "two" / "results.csv") as f, open(tmp_path / "one" / "results.csv") as g:
        drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
        assert drop(csv.DictReader(f)) == drop(csv.DictReader(g))
    meta = json.loads((tmp_path / "two" / "meta.json").read_text())
    assert meta["world"]["size"] == 2 and "contiguous blocks" in meta["world"]["shards"]


@pytest.mark.slow
def test_a_killed_rank_stops_the_job_and_any_world_size_resumes(tmp_path):
    out = tmp_path / "killed"
    proc = torchrun(out, 2, env={"PYVS_SWEEP_PAUSE": "1.0"}, wait=False)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if len(rows(out)) >= 3 and os.path.exists(f"{out}.pid1"):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    os.kill(int(open(f"{out}.pid1").read()), signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    partial = rows(out)
    assert 3 <= len(partial) < 18
    one_process(out)  # resumed by one process
    one_process(tmp_path / "whole")
    assert rows(out) == rows(tmp_path / "whole")


@pytest.mark.slow
@pytest.mark.parametrize("env,words", [({"PYVS_TEST_MISMATCH": "1"}, "ranks [1] have other sweep settings"),
                                       ({"PYVS_TEST_FAIL_RANK": "1"}, "rank 1 failed on purpose")])
def test_a_mismatched_or_failing_rank_stops_the_whole_job(tmp_path, env, words):
    t0 = time.time()
    code, log = torchrun(tmp_path / "bad", 2, env=env)
    assert code != 0 and words in log, log
    assert time.time() - t0 < 120  # stopped, not hung in a collective


@pytest.mark.slow
def test_pyvs_run_under_torchrun_equals_one_process(tmp_path):
    from conftest import DATA
    weights = DATA / "mobilenet_v2_int8_qnnpack_state_dict.pth"
    if not (weights.exists() and (DATA / "labels.csv").exists()):
        pytest.skip("needs the shared data")
    args = ["-m", "pyvs", "run", "--data", str(DATA), "--weights", str(weights), "--limit", "9",
            "--batch-size", "4", "--voltage", "0.51", "--protect-msbs", "1", "--pairs-per-layer", "4096"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable] + args + ["--json", str(tmp_path / "one.json")], check=True, env=env,
                   capture_output=True, timeout=240)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
                   + args + ["--json", str(tmp_path / "two.json")], check=True, env=env, capture_output=True,
                   timeout=240)
    drop = ("seconds", "images_per_s")
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    for part in ("clean", "point"):
        assert {k: v for k, v in one[part].items() if k not in drop} == \
               {k: v for k, v in two[part].items() if k not in drop}
    # The event model's tables come from the first 9 images, which the ranks gather.
    assert one["point"]["injected"] > 0 and one["point"]["corrected"] > 0


@pytest.mark.parametrize("env,words", [
    ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK 5 is not below WORLD_SIZE 2"),
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' is not an integer"),
    ({"WORLD_SIZE": "2"}, "RANK is not set"),
    ({"WORLD_SIZE": "2", "RANK": "-1"}, "RANK=-1 must be >= 0"),
])
def test_a_bad_torchrun_environment_is_one_line_and_never_waits(env, words, tmp_path, monkeypatch, capsys):
    # RANK >= WORLD_SIZE used to wait in the rendezvous forever.
    from pyvs import cli
    monkeypatch.delenv("RANK", raising=False)
    for k, v in dict(env, MASTER_ADDR="127.0.0.1", MASTER_PORT="1").items():
        monkeypatch.setenv(k, v)
    data = tmp_path / "d"
    data.mkdir()
    code = cli.main(["run", "--data", str(data)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
