"""The study scripts behind the docs' tables run end to end on small inputs
and write what the docs show (their numbers are checked where they come
from: tests/test_circuits.py, tests/test_events.py)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = DATA / "mobilenet_v2_int8_qnnpack_state_dict.pth"


def _run(script: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_circuit_table_on_uniform_pairs(tmp_path):
    out = _run("circuit_table.py", "--uniform-pairs", "4096", "--out", str(tmp_path / "c"))
    doc = json.loads((tmp_path / "c.json").read_text())
    assert set(doc["adders"]) == {"ripple", "kogge-stone", "brent-kung"}
    for e in doc["adders"].values():
        on = {c: e["corners"][c]["onset"] for c in ("slow", "typical", "fast")}
        assert on["slow"] > on["typical"] > on["fast"]
    assert "| ripple |" in out and (tmp_path / "c.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.skipif(not WEIGHTS.exists(), reason="needs the shared weights")
def test_convergence_on_a_small_capture(tmp_path):
    out = _run("convergence.py", "--data", str(DATA), "--weights", str(WEIGHTS), "--calibration-images", "2",
               "--per-image", "4096", "--doublings", "1", "--out", str(tmp_path / "v"))
    rows = json.loads((tmp_path / "v.json").read_text())["rows"]
    assert [r["pairs_per_layer"] for r in rows] == [4096, 8192] and rows[0]["pairs"] < rows[1]["pairs"]
    assert "| 8192 |" in out and (tmp_path / "v.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.skipif(not WEIGHTS.exists(), reason="needs the shared weights")
def test_signature_study_on_a_small_capture(tmp_path):
    out = _run("signature_study.py", "--data", str(DATA), "--weights", str(WEIGHTS), "--calibration-images", "2",
               "--pairs-per-layer", "512", "--out", str(tmp_path / "s"))
    doc = json.loads((tmp_path / "s.json").read_text())
    for r in doc["rows"]:
        assert abs(sum(c["mac_share"] for c in r["classes"]) - 1) < 1e-9
        if r["p_any"] > 0:  # every error sits on a run into the product's sign bits
            assert abs(sum(c["error_share"] for c in r["classes"]) - 1) < 1e-9
            assert r["classes"][0]["error_share"] == 0
    assert "| 17–20 |" in out and (tmp_path / "s.png").stat().st_size > 0
