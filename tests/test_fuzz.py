"""The project's own fuzz tests (hypothesis): bad input to every public
entry point is a clear ValueError/TypeError (or, on the command line, one
line and exit status 2), never a crash or a silent answer; and a
differential property: every path of the op equals the reference on random
shapes, widths, tile heights, probabilities, masks, row splits and thread
counts.

Bounded for CI (about 15 s on 2 cores, fixed examples: derandomized);
HYPOTHESIS_PROFILE=slow runs three times more, drawn afresh."""
import json
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import pyvs
from pyvs import cli, reference as R, timing
from pyvs.nn import FaultConfig, set_faults

from tinynet import tiny

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("slow", max_examples=600, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CLEAR = (ValueError, TypeError)
ODD_NUMBERS = st.sampled_from([0, 1e-3, 0.5, 1.0, -1e-9, 1.5, float("nan"), float("inf"), -float("inf")])
ODD_INTS = st.one_of(st.integers(-2**70, 2**70), st.integers(-3, 300), st.floats(allow_nan=True),
                     st.text(max_size=3), st.none(), st.booleans())


# ---- the op ---------------------------------------------------------------------

@st.composite
def tensors(draw, dtypes, max_rank=4):
    rank = draw(st.integers(0, max_rank))
    shape = draw(st.lists(st.integers(0, 5), min_size=rank, max_size=rank))
    dtype = draw(st.sampled_from(dtypes))
    t = torch.zeros(shape, dtype=dtype) if dtype != torch.bool else torch.zeros(shape, dtype=torch.bool)
    if rank >= 2 and draw(st.booleans()):
        t = t.transpose(-1, -2)  # another layout
    if draw(st.booleans()):
        t = t.to("meta")
    return t


@st.composite
def p_bits(draw):
    n = draw(st.integers(0, 40))
    values = draw(st.lists(st.one_of(ODD_NUMBERS, st.floats(0, 1)), min_size=n, max_size=n))
    kind = draw(st.sampled_from(["list", "float64", "float32", "2d", "meta"]))
    if kind == "list":
        return values
    t = torch.tensor(values, dtype=torch.float32 if kind == "float32" else torch.float64)
    if kind == "2d" and n % 2 == 0 and n:
        return t.view(2, -1)
    return t.to("meta") if kind == "meta" else t


@given(a=tensors([torch.int8, torch.uint8, torch.int16, torch.float32, torch.bool]),
       w=tensors([torch.int8, torch.uint8, torch.float32], max_rank=3), p=p_bits(),
       protect=ODD_INTS, seed=ODD_INTS, layer=ODD_INTS, row_offset=ODD_INTS, rows=ODD_INTS,
       impl=st.sampled_from(["auto", "fast", "simple", "fastest", 3]),
       drop=st.sampled_from([False, True, 0, 1, "yes", None]))
def test_op_bad_input_is_a_clear_error(a, w, p, protect, seed, layer, row_offset, rows, impl, drop):
    try:
        out, stats = pyvs.systolic_matmul(a, w, p, protect=protect, seed=seed, layer=layer,
                                          row_offset=row_offset, rows=rows, impl=impl, drop=drop)
    except CLEAR as e:
        assert str(e) and "Traceback" not in str(e)
        return
    # Accepted: then it was valid, and the result has the documented form.
    assert a.dtype in (torch.int8, torch.uint8) and w.dtype == torch.int8 and a.dim() in (2, 3)
    assert out.dtype == torch.int32 and stats.dtype == torch.int64 and stats.shape[0] == 2
    assert out.shape == (a.shape[:-1] + w.shape[-1:])
    pt = torch.as_tensor(p, dtype=torch.float64, device="cpu") if isinstance(p, list) else p
    assert pt.dim() == 1 and 8 <= pt.shape[0] <= 32
    if pt.device.type == "cpu":
        assert bool(((pt >= 0) & (pt <= 1)).all())
    assert isinstance(protect, int) and 0 <= protect < 2 ** pt.shape[0] and isinstance(rows, int) and rows >= 1
    assert isinstance(drop, bool)


@st.composite
def valid_problem(draw):
    W = draw(st.integers(8, 32))
    G = draw(st.integers(1, 3))
    M, K, N = draw(st.integers(1, 23)), draw(st.integers(0, 70)), draw(st.integers(1, 9))
    regime = draw(st.sampled_from(["zero", "tiny", "heavy", "random", "certain", "conditioned"]))
    cond = {}
    if regime == "conditioned":  # joint patterns by signature; p_bits zeros
        P = draw(st.integers(1, 4))
        pats = [draw(st.integers(1, 2 ** W - 1)) for _ in range(P)]
        scale = draw(st.sampled_from([1e-9, 1e-3, 0.1, 1.0]))
        joint = [[draw(st.floats(0.0, 1.0)) * scale / P for _ in range(P)] for _ in range(W + 1)]
        cond = dict(patterns=torch.tensor(pats), joint=torch.tensor(joint, dtype=torch.float64))
        p = [0.0] * W
    elif regime == "zero":
        p = [0.0] * W
    elif regime == "tiny":
        p = [draw(st.sampled_from([0.0, 1e-12, 5e-324, 1e-6])) for _ in range(W)]
    elif regime == "heavy":
        p = [draw(st.floats(0.0, 0.2)) for _ in range(W)]
    elif regime == "certain":
        p = [draw(st.sampled_from([0.0, 1.0])) for _ in range(W)]
    else:
        p = [draw(st.floats(0.0, 1.0)) for _ in range(W)]
    protect = draw(st.integers(0, 2 ** W - 1))
    rows = draw(st.integers(1, 80))
    dtype = draw(st.sampled_from([torch.int8, torch.uint8]))
    seed = draw(st.integers(-2 ** 63, 2 ** 64 - 1))
    row_offset = draw(st.integers(0, 2 ** 20))
    split = draw(st.integers(0, M))
    threads = draw(st.sampled_from([1, 2]))
    batched = draw(st.booleans()) or G > 1
    drop = draw(st.booleans())
    return W, G, M, K, N, p, protect, rows, dtype, seed, row_offset, split, threads, batched, drop, cond


@settings(max_examples=40)
@given(problem=valid_problem(), data=st.data())
def test_every_path_equals_the_reference(problem, data):
    W, G, M, K, N, p, protect, rows, dtype, seed, row_offset, split, threads, batched, drop, cond = problem
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2 ** 31)))
    lo, hi = (0, 256) if dtype == torch.uint8 else (-128, 128)
    a = torch.randint(lo, hi, (G, M, K), generator=gen, dtype=torch.int16).to(dtype)
    w = torch.randint(-128, 128, (G, K, N), generator=gen, dtype=torch.int16).to(torch.int8)
    if not batched:
        a, w = a[0], w[0]
    args = dict(protect=protect, seed=seed, layer=5, rows=rows, drop=drop, **cond)
    ref = R.systolic_matmul(a, w, p, row_offset=row_offset, **args)
    torch.set_num_threads(threads)
    for impl in ("simple", "fast", "auto"):
        out, stats = pyvs.systolic_matmul(a, w, p, row_offset=row_offset, impl=impl, **args)
        assert torch.equal(out, ref[0]) and torch.equal(stats, ref[1]), impl
        # the same rows in two calls, each with its global offset
        first = pyvs.systolic_matmul(a[..., :split, :], w, p, row_offset=row_offset, impl=impl, **args)
        second = pyvs.systolic_matmul(a[..., split:, :], w, p, row_offset=row_offset + split, impl=impl, **args)
        assert torch.equal(torch.cat([first[0], second[0]], dim=-2), ref[0]), impl
        assert torch.equal(first[1] + second[1], ref[1]), impl


# ---- fault settings and conversion ---------------------------------------------

@given(p=p_bits(), protect=ODD_INTS, seed=ODD_INTS, rows=ODD_INTS,
       impl=st.sampled_from(["auto", "simple", "fastest", None]))
def test_fault_config_bad_input_is_a_clear_error(p, protect, seed, rows, impl):
    try:
        cfg = FaultConfig(p, protect=protect, seed=seed, rows=rows, impl=impl)
    except CLEAR:
        return
    assert cfg.p_bits.dtype == torch.float64 and cfg.p_bits.dim() == 1 and 8 <= cfg.p_bits.numel() <= 32
    assert bool(((cfg.p_bits >= 0) & (cfg.p_bits <= 1)).all())
    assert isinstance(cfg.protect, int) and 0 <= cfg.protect < 2 ** cfg.p_bits.numel()
    assert isinstance(cfg.rows, int) and cfg.rows >= 1 and cfg.impl in ("auto", "simple")


_, _, TINY = tiny()


@given(config=st.one_of(st.none(), st.floats(), st.text(max_size=3), st.integers(),
                        st.dictionaries(st.sampled_from(["fc", "pw", "nope", ""]), st.none(), max_size=2),
                        st.builds(lambda n: FaultConfig([0.0] * n), st.integers(8, 32))))
def test_set_faults_bad_input_is_a_clear_error(config):
    try:
        set_faults(TINY, config)
    except CLEAR:
        return
    assert config is None or isinstance(config, (dict, FaultConfig))
    set_faults(TINY, None)


@settings(max_examples=15)
@given(poison=st.sampled_from([None, float("nan"), float("inf")]), where=st.sampled_from(["weight", "bias"]),
       act=st.sampled_from(["uint8", "int8", "float16"]), acc_bits=st.sampled_from([8, 32, 40, "32"]),
       empty=st.booleans())
def test_convert_bad_input_is_a_clear_error(poison, where, act, acc_bits, empty):
    from torch import nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    if poison is not None:
        getattr(net[0], where).data.view(-1)[0] = poison
    calib = [] if empty else [torch.randn(2, 3, 8, 8)]
    try:
        q = pyvs.convert(net, calib, act_dtype=act, acc_bits=acc_bits)
    except CLEAR:
        return
    assert poison is None and act in ("uint8", "int8") and acc_bits in (8, 32) and not empty
    with torch.no_grad():
        assert torch.isfinite(q(torch.randn(1, 3, 8, 8))).all()


# ---- the layers and the other entry points ------------------------------------------

ODD_GEOMETRY = st.one_of(st.integers(-2, 4), st.floats(allow_nan=True), st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
                         st.lists(st.integers(0, 3), max_size=3), st.none(), st.text(max_size=2))


@given(stride=ODD_GEOMETRY, padding=ODD_GEOMETRY, dilation=ODD_GEOMETRY, groups=ODD_GEOMETRY,
       w_scale=st.one_of(ODD_NUMBERS, st.lists(ODD_NUMBERS, min_size=1, max_size=5)),
       in_scale=ODD_NUMBERS, size=st.integers(1, 9),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.complex64, torch.bool]))
def test_conv_layer_misuse_is_a_clear_error(stride, padding, dilation, groups, w_scale, in_scale, size, dtype):
    # Zero strides, negative padding, zero/NaN/negative scales, complex or
    # integer inputs and inputs smaller than the kernel used to divide by
    # zero, crash deep inside, or run silently.
    from pyvs.nn import SystolicConv2d
    w_q = torch.ones(4, 2, 3, 3, dtype=torch.int8)
    try:
        layer = SystolicConv2d(w_q, w_scale, None, in_scale, 0, stride=stride, padding=padding, dilation=dilation,
                               groups=groups)
        y = layer(torch.ones(1, 2 * (layer.groups if layer.groups in (1, 2) else 1), size, size, dtype=dtype))
    except CLEAR:
        return
    assert torch.is_floating_point(y) and torch.isfinite(y).all() and min(y.shape) >= 1


@given(thing=st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just(lambda x: x), st.floats()))
def test_other_entry_points_refuse_what_they_cannot_use(thing):
    for call in (lambda: pyvs.convert(thing, [torch.zeros(1, 3, 8, 8)]),
                 lambda: timing.error_probabilities([0.9], tech=thing),
                 lambda: pyvs.systolic_matmul(torch.zeros(2, 3, dtype=torch.int8), torch.zeros(3, 2, dtype=torch.int8),
                                              thing),
                 lambda: timing.load_table(thing) if not isinstance(thing, str) else timing.load_table("/nonexistent")):
        with pytest.raises(CLEAR):
            call()


# ---- the error-table loader ---------------------------------------------------------

GOOD_TABLE = {"format": "pyvs-error-table", "version": 1, "freq_ghz": 0.7, "acc_bits": 8,
              "voltages": [0.5, 0.6], "p": [[0.0] * 8, [0.1] * 8], "params": {}}
ODD_JSON = st.one_of(st.none(), st.booleans(), st.integers(-5, 50), st.floats(allow_nan=False),
                     st.text(max_size=4), st.lists(st.floats(-1, 2), max_size=9),
                     st.lists(st.lists(st.floats(-1, 2), max_size=9), max_size=3))


@given(key=st.sampled_from(sorted(GOOD_TABLE) + ["extra"]), value=ODD_JSON, drop=st.booleans(),
       raw=st.one_of(st.none(), st.text(max_size=20)))
def test_table_loader_bad_input_is_a_clear_error(tmp_path_factory, key, value, drop, raw):
    doc = dict(GOOD_TABLE)
    if drop:
        doc.pop(key, None)
    else:
        doc[key] = value
    path = tmp_path_factory.mktemp("t") / "table.json"
    path.write_text(raw if raw is not None else json.dumps(doc))
    try:
        table = timing.load_table(str(path))
    except ValueError:
        return
    assert table.acc_bits in range(8, 33) and len(table.p) == len(table.voltages) > 0
    assert all(len(r) == table.acc_bits and all(0 <= x <= 1 for x in r) for r in table.p)
    assert all(b > a for a, b in zip(table.voltages, table.voltages[1:])) and table.freq_ghz > 0


# ---- the command line ---------------------------------------------------------------

VALUES = st.sampled_from(["0", "1", "-1", "0.5", "1.5", "nan", "inf", "-inf", "1e-9", "abc", "", "0x10",
                          "2", "8", "33", "1e30", "0.53", "0.9,0.53", "none,auto", "0,1.5", "msb40", "cpu",
                          "gpu", "cuda", "/nonexistent", "x.bmp", "256", "event", "static-uniform", "resnet18",
                          "mobilenet_v2_int8", "nope", "ws", "os"])
HARDWARE = ["--freq", "--v-nominal", "--rows", "--cols", "--acc-bits", "--replay-cycles", "--array-batch", "--dataflow"]
TIMING = ["--timing-model", "--guard-band", "--vth", "--alpha", "--sigma-gate", "--calibration-images",
          "--pairs-per-layer"]
DATA_OPTIONS = ["--weights", "--limit", "--batch-size", "--threads", "--device", "--model", "--ptq-images",
                "--power-gating"]
OPTIONS = {
    "demo": ["--m", "--k", "--n", "--p", "--protect-msbs", "--protect", "--seed"] + HARDWARE,
    "timing": ["--vmin", "--vmax", "--step", "--out", "--plot"] + HARDWARE + TIMING,
    "run": ["--voltage", "--protect-msbs", "--protect", "--seed", "--json"] + DATA_OPTIONS + HARDWARE + TIMING,
    "sweep": ["--voltages", "--strategies", "--seeds", "--budget", "--latency-budget", "--out"]
             + DATA_OPTIONS + HARDWARE + TIMING,
    "slack": ["--guard-bands", "--vmin", "--vmax", "--step", "--latency-budget", "--budget", "--evaluate-below",
              "--out"] + DATA_OPTIONS + HARDWARE + TIMING,
    "report": ["--latency-budget", "--budget"],
}


class Reached(Exception):
    """The command got past its checks to loading data and a model."""


@given(command=st.sampled_from(sorted(OPTIONS)), data=st.data())
def test_cli_bad_input_is_one_line(command, data, tmp_path_factory, monkeypatch, capsys):
    capsys.readouterr()  # what earlier examples printed
    work = tmp_path_factory.mktemp("cli")
    monkeypatch.chdir(work)
    monkeypatch.setattr(cli, "_model_and_data", lambda *a, **k: (_ for _ in ()).throw(Reached()))
    opts = data.draw(st.lists(st.sampled_from(OPTIONS[command]), max_size=4, unique=True))
    argv = [command] + (["--data", str(work)] if command in ("run", "sweep", "slack") else [])
    argv += [str(work)] if command == "report" else []
    for o in opts:
        argv += [o, data.draw(VALUES)]
    if command == "demo":  # keep the GEMMs small
        argv += ["--m", "7", "--k", "9", "--n", "5"] if not {"--m", "--k", "--n"} & set(opts) else []
    if command == "timing" and "--step" not in opts:
        argv += ["--step", "0.1"]
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse's own usage errors
        assert e.code == 2, argv
        return
    except Reached:
        return
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code)
    if code == 2:
        last = [line.rsplit("\r", 1)[-1] for line in err.splitlines() if line.rsplit("\r", 1)[-1].strip()]
        assert len(last) == 1 and last[0].startswith(f"pyvs {command}: "), (argv, err)
