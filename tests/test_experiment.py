"""One operating point: the golden run, a faulty evaluation and its costs
as a PointResult; and the same point on a GPU, bit for bit."""
import dataclasses
import math

import pytest
import torch

from pyvs.costs import Workload
from pyvs.experiment import Experiment
from pyvs.latency import ArrayConfig

from conftest import DATA, needs_cuda
from tinynet import batched, tiny


def _p(rate=2e-3, bits=(1, 24, 30)):
    p = torch.zeros(32, dtype=torch.float64)
    p[list(bits)] = rate
    return p


def test_point_fields_follow_from_the_evaluation():
    _, images, q = tiny()
    exp = Experiment(q, batched(images), array=ArrayConfig(rows=16), progress=False)
    assert exp.golden.clean["n"] == len(images) and set(exp.golden.shapes) == {
        "stem.0", "dw.0", "pw", "grouped", "fc"}
    r = exp.point(0.5, _p(), 1 << 30, seed=3, strategy="0x40000000")
    assert r.n == 24 and r.protected_bits == 1 and r.protect == "0x40000000"
    assert r.corrected == r.corrected_per_bit[30] > 0 and r.injected == sum(r.injected_per_bit) > 0
    assert r.corrected_per_image == r.corrected / 24 and r.injected_per_image == r.injected / 24
    work = Workload(exp.golden.shapes, ArrayConfig(rows=16))
    assert sum(r.corrected_per_layer.values()) == pytest.approx(r.corrected_per_image)
    assert r.latency_overhead_bound == pytest.approx(r.corrected_per_image / work.cycles)
    # Errors of one cycle share its stall: each layer's errors, Poisson over its cycles.
    stalls = sum(c * (1 - math.exp(-r.corrected_per_layer[n] / c)) for n, c in work.base_cycles.items()
                 if n in r.corrected_per_layer)
    assert r.latency_overhead == pytest.approx(stalls / work.cycles, rel=1e-12)
    assert r.latency_overhead < r.latency_overhead_bound
    assert r.top1_loss == pytest.approx(exp.golden.clean["top1"] - r.top1)
    assert r.agree_loss == pytest.approx(1 - r.agree) and r.max_p == 2e-3


def test_error_free_point_is_the_golden_run():
    _, images, q = tiny()
    exp = Experiment(q, batched(images), progress=False)
    r = exp.point(0.9, torch.zeros(32, dtype=torch.float64), 0, seed=0, strategy="none")
    assert r.agree == 1.0 and r.injected == r.corrected == 0 and r.seconds == 0.0
    assert r.top1 == exp.golden.clean["top1"] and r.latency_overhead == 0 and r.energy_saving == 0


def test_masks_that_agree_on_erring_bits_are_evaluated_once():
    _, images, q = tiny()
    exp = Experiment(q, batched(images), progress=False)
    a = exp.point(0.5, _p(), 1 << 24, seed=1, strategy="a")
    b = exp.point(0.5, _p(), (1 << 24) | (1 << 5), seed=1, strategy="b")  # bit 5 never errs
    same = lambda r: {k: v for k, v in dataclasses.asdict(r).items()  # noqa: E731
                      if k not in ("strategy", "protect", "protected_bits", "energy_j", "energy_saving",
                                   "energy_dynamic_j", "energy_leakage_j", "energy_razor_j")}
    assert same(a) == same(b)
    assert b.energy_j > a.energy_j  # the extra Razor bit still costs energy
    assert exp.point(0.5, _p(), 1 << 24, seed=2, strategy="a") != a


@needs_cuda
def test_a_point_on_the_gpu_equals_the_cpu():
    _, images, q = tiny()
    rows, golden = [], []
    for device in ("cpu", "cuda"):
        exp = Experiment(q.to(device), batched(images), device=device, progress=False)
        r = exp.point(0.5, _p(rate=5e-3), 1 << 30, seed=4, strategy="x")
        rows.append({k: v for k, v in dataclasses.asdict(r).items() if k != "seconds"})
        golden.append(exp.golden.pred)
    assert torch.equal(golden[0], golden[1]) and rows[0] == rows[1]


INT8 = DATA / "mobilenet_v2_int8_qnnpack_state_dict.pth"


@needs_cuda
@pytest.mark.skipif(not (INT8.exists() and (DATA / "labels.csv").exists()), reason="needs the shared data")
def test_mobilenet_v2_logits_and_counts_on_the_gpu_equal_the_cpu():
    import pyvs
    from pyvs import data, models, timing
    from pyvs.nn import FaultConfig, Probe, forward_pass, set_faults
    batches = data.decoded(data.imagenet_dataset(str(DATA), 36), 12)
    model = pyvs.convert(models.mobilenet_v2_int8(str(INT8)))
    p = timing.error_probabilities([0.53], model="static")[0]
    out = {}
    for device in ("cpu", "cuda"):
        m = model.to(device)
        set_faults(m, FaultConfig(p, protect=0xE0000000, seed=1))
        probe, logits = Probe(), []
        for i, (x, _) in enumerate(batches):
            with forward_pass(12 * i, probe), torch.no_grad():
                logits.append(m(data.normalize(x.to(device))).cpu())
        out[device] = torch.cat(logits), probe.counts()
    assert torch.equal(out["cpu"][0], out["cuda"][0])
    assert out["cpu"][1].keys() == out["cuda"][1].keys()
    assert all(torch.equal(out["cpu"][1][k], out["cuda"][1][k]) for k in out["cpu"][1])
    assert not math.isnan(float(out["cpu"][0].sum()))
