"""One operating point: the golden run, a faulty evaluation and its costs
as a PointResult; and the same point on a GPU, bit for bit."""
import math

import pytest
import torch

from pyvs.costs import Workload
from pyvs.experiment import Experiment
from pyvs.hardware import ArrayConfig

from conftest import DATA, needs_cuda
from tinynet import batched, tiny


def _p(rate=2e-3, bits=(1, 24, 30)):
    p = torch.zeros(32, dtype=torch.float64)
    p[list(bits)] = rate
    return p


def test_point_fields_follow_from_the_evaluation():
    _, images, q = tiny()
    exp = Experiment(q, batched(images), array=ArrayConfig(rows=16), progress=False)
    assert exp.golden.accuracy.n == len(images) and set(exp.golden.shapes) == {
        "stem.0", "dw.0", "pw", "grouped", "fc"}
    r = exp.point(0.5, _p(), 1 << 30, seed=3, strategy="0x40000000")
    a, c, k = r.accuracy, r.counts, r.costs
    assert a.n == 24 and r.protected_bits == 1 and r.protect == "0x40000000"
    assert c.corrected == c.corrected_per_bit[30] > 0 and c.injected == sum(c.injected_per_bit) > 0
    assert c.corrected_per_image == c.corrected / 24 and c.injected_per_image == c.injected / 24
    work = Workload(exp.golden.shapes, ArrayConfig(rows=16))
    assert sum(c.corrected_per_layer.values()) == pytest.approx(c.corrected_per_image)
    assert sum(c.injected_per_layer.values()) == pytest.approx(c.injected_per_image)  # saved per layer too
    assert c.injected_per_image > 0
    assert k.latency_overhead_bound == pytest.approx(c.corrected_per_image / work.cycles)
    # Errors of one cycle share its stall: each layer's errors, Poisson over its cycles.
    stalls = sum(cy * (1 - math.exp(-c.corrected_per_layer[n] / cy)) for n, cy in work.base_cycles.items()
                 if n in c.corrected_per_layer)
    assert k.latency_overhead == pytest.approx(stalls / work.cycles, rel=1e-12)
    assert k.latency_overhead < k.latency_overhead_bound
    assert a.top1_loss == pytest.approx(exp.golden.top1 - a.top1)
    assert a.agree_loss == pytest.approx(1 - a.agree) and r.max_p == 2e-3


def test_error_free_point_is_the_golden_run():
    _, images, q = tiny()
    exp = Experiment(q, batched(images), progress=False)
    r = exp.point(0.9, torch.zeros(32, dtype=torch.float64), 0, seed=0, strategy="none")
    assert r.accuracy.agree == 1.0 and r.counts.injected == r.counts.corrected == 0 and r.seconds == 0.0
    assert r.accuracy == exp.golden.accuracy and r.costs.latency_overhead == 0 and r.costs.energy_saving == 0


def test_masks_that_agree_on_erring_bits_are_evaluated_once():
    _, images, q = tiny()
    exp = Experiment(q, batched(images), progress=False)
    a = exp.point(0.5, _p(), 1 << 24, seed=1, strategy="a")
    b = exp.point(0.5, _p(), (1 << 24) | (1 << 5), seed=1, strategy="b")  # bit 5 never errs
    assert a.accuracy == b.accuracy and a.counts == b.counts
    assert b.costs.latency_overhead == a.costs.latency_overhead
    assert b.costs.energy_j > a.costs.energy_j  # the extra Razor bit still costs energy
    assert exp.point(0.5, _p(), 1 << 24, seed=2, strategy="a") != a


def test_drop_costs_no_stall_and_is_evaluated_apart_from_replay():
    # TE-Drop: the same detected errors, no replays (latency 0, no replay
    # energy), the Razor bits' energy still paid; a drop is its own
    # evaluation only where a protected bit errs.
    _, images, q = tiny()
    exp = Experiment(q, batched(images), array=ArrayConfig(rows=16), progress=False)
    replay = exp.point(0.5, _p(), 1 << 30, seed=3, strategy="0x40000000")
    drop = exp.point(0.5, _p(), 1 << 30, seed=3, strategy="0x40000000-drop", on_error="drop")
    assert drop.on_error == "drop" and replay.on_error == "replay"
    assert drop.counts.corrected_per_bit == replay.counts.corrected_per_bit and drop.counts.corrected > 0
    assert drop.counts.injected <= replay.counts.injected
    assert drop.costs.latency_overhead == drop.costs.latency_overhead_bound == 0 < replay.costs.latency_overhead
    assert drop.costs.energy_replay_j == 0 < replay.costs.energy_replay_j
    assert 0 < drop.costs.energy_razor_j < replay.costs.energy_razor_j  # Razor bits leak through the stalls too
    assert exp.key(0.5, _p(), 1 << 30, 3, "drop") != exp.key(0.5, _p(), 1 << 30, 3, "replay")
    assert exp.key(0.5, _p(), 1 << 5, 3, "drop") == exp.key(0.5, _p(), 1 << 5, 3, "replay")  # bit 5 never errs
    with pytest.raises(ValueError, match="on_error must be one of replay, drop"):
        exp.point(0.5, _p(), 1 << 30, seed=3, strategy="x", on_error="ignore")


def test_the_experiment_owns_its_timing_and_runs_the_golden_run_once_when_needed():
    from pyvs.timing import TimingSpec
    _, images, q = tiny()
    exp = Experiment(q, batched(images), timing=TimingSpec.named("static-uniform"), progress=False)
    assert exp._golden is None  # nothing run yet: a resumed sweep hands over its cached golden run
    table = exp.error_table([0.5, 0.9])
    assert table.params["model"] == "static" and exp._golden is None
    assert exp.golden is exp.golden
    with pytest.raises(TypeError, match="timing must be a TimingSpec"):
        Experiment(q, batched(images), timing="event", progress=False)


@needs_cuda
def test_a_point_on_the_gpu_equals_the_cpu():
    _, images, q = tiny()
    rows, golden = [], []
    for device in ("cpu", "cuda"):
        exp = Experiment(q.to(device), batched(images), device=device, progress=False)
        r = exp.point(0.5, _p(rate=5e-3), 1 << 30, seed=4, strategy="x")
        rows.append({k: v for k, v in r.row().items() if k != "seconds"})
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


def test_rows_record_the_dataflow():
    _, images, q = tiny()
    for dataflow in ("ws", "os"):
        exp = Experiment(q, batched(images), array=ArrayConfig(rows=16, dataflow=dataflow), progress=False)
        assert exp.point(0.5, _p(), 0, seed=1, strategy="none").dataflow == dataflow
