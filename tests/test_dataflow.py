"""Operand pairs from the dataflow and the per-layer tables made from them:
the captured partial sums against a direct computation, independence of
batching, and the tables' properties on a real (tiny) converted model."""
import numpy as np
import pytest
import torch

import pyvs.timing as T
from pyvs.dataflow import Capture, calibration_images, capture_pairs
from pyvs.experiment import Experiment
from pyvs.hardware import ArrayConfig
from pyvs.timing import LayerTiming, TimingSpec
from pyvs.timing.event import EventModel
from pyvs.timing import signatures as S
from pyvs.timing.layers import mac_weighted

from tinynet import batched, tiny

W = 32


def _gemm(G=3, M=10, K=37, N=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, (G, M, K), generator=gen).to(torch.uint8)
    w = torch.randint(-128, 128, (G, K, N), generator=gen).to(torch.int8)
    return a, w


def _partial(a, w, g, m, n, k, rows):
    """s(m, n, k - 1): the MACs of k's tile before k, by hand, as a W-bit pattern."""
    k0 = k - k % rows
    return sum(int(a[g, m, j]) * int(w[g, j, n]) for j in range(k0, k)) % (1 << W)


@pytest.mark.parametrize("rows_per_image,rows", [(5, 16), (5, 256), (1, 8), (10, 4)])
def test_captured_pairs_are_what_the_pe_sees(rows_per_image, rows):
    a, w = _gemm()
    cap = Capture(samples=200, per_image=64, acc_bits=W, rows=rows, seed=1)
    cap("layer", a, w, rows_per_image, first_image=3)
    p, where = cap.pairs()["layer"], cap.where("layer")
    images = 10 // rows_per_image if rows_per_image > 1 else 1
    # the call's first row has no predecessor: the first image's candidates there are dropped
    assert min(200, 64 * images - 64 // 4) <= len(p) <= min(200, 64 * images - 1)
    if images > 1 and rows_per_image > 1:  # pairs across the image boundary: row m - 1 is the previous image's last
        assert any(int(m) % rows_per_image == 0 for m in where["m"])
    for i in range(len(p)):
        g, m, n, k = (int(where[c][i]) for c in "gmnk")
        assert m >= 1
        assert p.prev_a[i] == a[g, m - 1, k] and p.a[i] == a[g, m, k] and p.w[i] == w[g, k, n]
        assert p.prev_x[i] == _partial(a, w, g, m - 1, n, k, rows)
        assert p.x[i] == _partial(a, w, g, m, n, k, rows)


def test_the_reservoir_keeps_the_same_pairs_whatever_the_order():
    a, w = _gemm(M=40)
    one, two = Capture(samples=50, per_image=32, seed=2), Capture(samples=50, per_image=32, seed=2)
    for i in (0, 2):                                       # passes of 2 images, in order
        one("l", a[:, 10 * i: 10 * i + 20], w, 10, first_image=i)
    for i in (2, 0):                                       # the same passes, the other way round
        two("l", a[:, 10 * i: 10 * i + 20], w, 10, first_image=i)
    assert torch.equal(one.kept["l"][0], two.kept["l"][0])
    for f, g in zip(one.kept["l"][1][:5], two.kept["l"][1][:5]):
        assert torch.equal(f, g)


def test_calibration_does_not_depend_on_the_batching():
    _, images, q = tiny()
    got = []
    for bs in (5, 8, 24):
        cal = calibration_images(batched(images, bs), 12)
        assert torch.equal(cal, images[:12])
        pairs = capture_pairs(q, cal, samples=300, per_image=40, rows=16, seed=0)
        got.append({n: (p.a.tolist(), p.x.tolist(), p.prev_x.tolist()) for n, p in pairs.items()})
    assert got[0] == got[1] == got[2]
    assert set(got[0]) == {"stem.0", "dw.0", "pw", "grouped", "fc"}  # fc: consecutive images


def test_a_capture_draws_enough_candidates_for_the_pairs_asked_for():
    # 256 candidates per image and layer, or more when the images could not
    # hold the pairs asked for: 4 images x 256 < 2000 pairs; 2000 / 3 per
    # image, as a pass's first row has no predecessor.
    assert TimingSpec.named("event", pairs_per_layer=4096).candidates_per_image == 256
    assert TimingSpec.named("event").candidates_per_image == 4229  # 131072 pairs per layer from 32 images
    _, images, q = tiny()
    spec = TimingSpec.named("event", calibration_images=4, pairs_per_layer=2000)
    assert spec.candidates_per_image == 667 and spec.describe()["calibration"]["candidates_per_image"] == 667
    exp = Experiment(q, batched(images, 8), array=ArrayConfig(rows=16), timing=spec, progress=False)
    lt = exp.layer_timing()
    assert lt.provenance["per_image"] == 667
    assert max(lt.provenance["pairs"].values()) == 2000  # 4 x 256 = 1024 before


@pytest.fixture(scope="module")
def timing():
    _, images, q = tiny()
    spec = TimingSpec.named("event", calibration_images=16, pairs_per_layer=1024)
    exp = Experiment(q, batched(images, 8), array=ArrayConfig(rows=16), timing=spec, progress=False)
    return exp, exp.layer_timing()


def test_layer_tables_hold_what_the_issue_asks(timing):
    exp, lt = timing
    volts = [round(0.40 + 0.01 * i, 2) for i in range(51)]
    for f in (0.7, 1.0):
        array = ArrayConfig(freq_ghz=f)
        wrong, late = lt.tables(volts, array), lt.tables(volts, array, late=True)
        for name in wrong:
            assert np.all(wrong[name] <= late[name] + 1e-15), name
            assert np.all(np.diff(wrong[name], axis=0) <= 1e-15), name
            assert wrong[name][-1].max() < 1e-12, name
            assert wrong[name][0].max() > 1e-3, name
        if f > 0.7:
            slow = lt.tables(volts, ArrayConfig())
            assert all(np.all(wrong[n] >= slow[n] - 1e-15) for n in wrong)


def test_the_table_is_per_layer_with_the_mac_weighted_mean(timing, tmp_path):
    exp, lt = timing
    macs = exp.workload.macs_by_layer
    table = lt.table([0.5, 0.45], ArrayConfig(), macs, T.TimingOptions().describe())
    assert table.voltages == [0.45, 0.5] and list(table.layers) == list(macs)
    mean = mac_weighted({n: np.array(t) for n, t in table.layers.items()}, macs)
    assert np.allclose(table.tensor().numpy(), mean, rtol=1e-12, atol=0)
    assert table.params["operands"]["kind"] == "captured" and table.params["operands"]["images"] == 16
    T.save_table(table, str(tmp_path / "t.json"))
    back = T.load_table(str(tmp_path / "t.json"))
    assert back.layers == table.layers and back.params == table.params


def test_the_halves_add_up_and_their_onsets_are_the_tables(timing):
    exp, lt = timing
    macs, array = exp.workload.macs_by_layer, ArrayConfig()
    pairs = capture_pairs(exp.model, calibration_images(exp.batches, 16), samples=1024,
                          per_image=exp.timing.candidates_per_image, rows=16)
    for name, h in lt.histograms.items():  # simulated in halves == simulated whole
        whole = lt.model.histograms(pairs[name])
        assert np.array_equal(h.last, whole.last) and np.array_equal(h.ends_minus_starts, whole.ends_minus_starts)
        assert lt.halves[name][0].n == (len(pairs[name]) + 1) // 2
    c = lt.onsets(array, macs)

    def top(layer_timing, v):  # the MAC-weighted table's largest bit at v, through the public table
        return max(layer_timing.table([v], array, macs, {}).p[0])
    for got, part in [(c["onset"], lt)] + [(c["halves"][i], LayerTiming(lt.model, {n: hs[i] for n, hs in
                                                                              lt.halves.items()}))
                                          for i in (0, 1)]:
        assert top(part, got) >= T.layers.ONSET > top(part, round(got + 0.001, 3))
    assert c["converged"] == all(abs(h - c["onset"]) <= 0.001 + 1e-9 for h in c["halves"])
    assert c["pairs"] == sum(len(p) for p in pairs.values())
    assert lt.table([0.5], array, macs, {}).params["convergence"] == c


def test_per_layer_tables_differ_from_uniform_operands(timing):
    _, lt = timing
    uniform = T.error_probabilities([0.5]).numpy()[0]
    real = lt.tables([0.5], ArrayConfig())
    assert any(t[0, 28:].max() > 100 * uniform[28:].max() for t in real.values())


def test_the_experiment_tables_are_reproducible_from_the_seed():
    _, images, q = tiny()
    def table(volts, seed, model="event"):
        spec = TimingSpec.named(model, seed=seed, calibration_images=8, pairs_per_layer=256)
        exp = Experiment(q, batched(images, 8), array=ArrayConfig(rows=16), timing=spec, progress=False)
        return exp.error_table(volts)
    a, b, c = table([0.45, 0.5], 5), table([0.5, 0.45], 5), table([0.45, 0.5], 6)
    assert a.layers == b.layers and a.layers != c.layers
    static = table([0.5], 0, "static-uniform")
    assert static.layers == {} and static.params["model"] == "static"
    assert torch.equal(static.rates(0.5), T.error_probabilities([0.5], model="static")[0])


@pytest.mark.parametrize("call,match", [
    (lambda q, im: capture_pairs(q, im[:1]), "at least 2 calibration images"),
    (lambda q, im: Capture(samples=0), "must be >= 1"),
    (lambda q, im: LayerTiming.from_pairs(EventModel(32, T.DEFAULT), {}), "no operand pairs"),
    (lambda q, im: mac_weighted({"a": np.zeros((1, 32))}, {"b": 5}), "no MACs"),
    (lambda q, im: calibration_images([], 4), "no calibration image"),
    (lambda q, im: TimingSpec.named("magic"), "unknown timing model 'magic'"),
    (lambda q, im: Experiment(q, batched(im[:1], 8), progress=False).error_table([0.5]), "at least 2 images"),
    (lambda q, im: TimingSpec.named("event").table([0.5], ArrayConfig(), 32), "needs operand pairs captured"),
])
def test_bad_calibration_is_a_value_error(call, match):
    _, images, q = tiny()
    with pytest.raises(ValueError, match=match):
        call(q, images)


# ---- output-stationary ----------------------------------------------------------------

def _prefix(a, w, g, m, n, k):
    """s(k - 1) of an output-stationary PE: the first k products of output (m, n), W bits."""
    return sum(int(a[g, m, j]) * int(w[g, j, n]) for j in range(k)) % (1 << W)


@pytest.mark.parametrize("rows_per_image", [5, 1])
def test_output_stationary_pairs_are_what_the_pe_sees(rows_per_image):
    # In an OS array one PE runs one output's whole K: consecutive cycles
    # are consecutive k of that output, and the weight changes too.
    a, w = _gemm(K=37)
    cap = Capture(samples=300, per_image=64, acc_bits=W, seed=3, dataflow="os")
    cap("layer", a, w, rows_per_image, first_image=2)
    p, where = cap.pairs()["layer"], cap.where("layer")
    assert len(p) == min(300, 64 * (10 // rows_per_image))
    assert not np.array_equal(p.prev_w, p.w)  # the weight moves in OS
    for i in range(len(p)):
        g, m, n, k = (int(where[c][i]) for c in "gmnk")
        assert k >= 1
        assert p.prev_a[i] == a[g, m, k - 1] and p.a[i] == a[g, m, k]
        assert p.prev_w[i] == w[g, k - 1, n] and p.w[i] == w[g, k, n]
        assert p.prev_x[i] == _prefix(a, w, g, m, n, k - 1) and p.x[i] == _prefix(a, w, g, m, n, k)


def test_output_stationary_tables_come_from_their_own_pairs():
    _, images, q = tiny()
    tables = {}
    for df in ("ws", "os"):
        spec = TimingSpec.named("event", calibration_images=8, pairs_per_layer=512)
        exp = Experiment(q, batched(images, 8), array=ArrayConfig(rows=16, dataflow=df), timing=spec, progress=False)
        t = exp.error_table([0.45, 0.5])
        assert t.params["operands"]["dataflow"] == df
        tables[df] = t
    assert tables["ws"].layers != tables["os"].layers
    with pytest.raises(ValueError, match="dataflow must be one of ws, os"):
        Capture(dataflow="rs")


@pytest.fixture(scope="module")
def conditioned():
    _, images, q = tiny()
    spec = TimingSpec.named("event", calibration_images=16, pairs_per_layer=1024, injection="conditioned")
    return Experiment(q, batched(images, 8), array=ArrayConfig(rows=16), timing=spec, progress=False)


def test_joint_tables_have_the_layer_tables_raw_rates(conditioned):
    # Each layer's P(pattern | signature), weighted by how often its pairs
    # have each signature, gives back every bit's P(wrong) at that capture
    # time as the histograms give it (before the tables' envelope).
    lt = conditioned.layer_timing()
    array = ArrayConfig(rows=16)
    for v in (0.5, 0.47):
        tc = lt.model.capture_times([v], array)[0]
        tables = lt.joint_tables(v, array)
        assert set(tables) == set(lt.pairs)
        for name, (patterns, joint) in tables.items():
            p = lt.pairs[name]
            share = np.bincount(S.signature(p.x, p.a, p.w, W), minlength=W + 1) / len(p)
            bits = ((patterns.numpy()[:, None] >> np.arange(W)) & 1).astype(float)
            marginal = share @ joint.numpy() @ bits
            want = T.waveforms.probabilities(lt.histograms[name], [tc], lt.model.tech.sigma_gate, lt.model.d2)[0][0]
            assert np.allclose(marginal, want, rtol=1e-9, atol=1e-300), (name, v)
            assert joint.shape == (W + 1, len(patterns)) and float(joint.sum(1).max()) <= 1


def test_conditioned_injection_runs_the_model_and_says_so(conditioned, timing):
    exp_ind, _ = timing
    v = 0.48
    got = conditioned.point(v, conditioned.error_table([v]).rates(v), 0, 0, "none")
    assert got.counts.injected > 0
    assert conditioned.timing.describe()["injection"] == "conditioned"
    assert exp_ind.timing.describe()["injection"] == "independent"
    again = conditioned.point(v, conditioned.error_table([v]).rates(v), 0, 0, "none")
    assert again.counts == got.counts  # remembered, and deterministic
    with pytest.raises(ValueError, match="captured pairs"):
        exp_ind.layer_timing().joint_tables(v, ArrayConfig(rows=16))
    with pytest.raises(ValueError, match="needs the 'event' timing model"):
        TimingSpec.named("event-uniform", injection="conditioned")
    with pytest.raises(ValueError, match="unknown injection"):
        TimingSpec.named("event", injection="joint")
