"""The timing models: physics sanity of both (event-driven, the default,
and static), the static model's analytic form against its gate-level
Monte Carlo, the table file, and bad input. The event-driven model's own
tests are in test_events.py."""
import json
import math

import numpy as np
import pytest
import torch

import pyvs.timing as T
from pyvs.hardware import ArrayConfig
from pyvs.timing.datapath import build_mac, worst_case_path
from pyvs.timing.montecarlo import monte_carlo, simulate

GRID = [0.5 + 0.05 * i for i in range(9)]  # 0.5 .. 0.9 V

# The analytic model's documented error against the Monte Carlo: first-order
# canonical SSTA approximates each max of arrival times by a Gaussian, which
# measured within 8 % (relative) where counts are large (README, "Timing model").
MODEL_TOLERANCE = 0.08


def test_netlist_computes_the_mac_exactly():
    # Every int8 pair through the gate-level multiplier, with random
    # accumulator values: the simulated sums equal x + a*w mod 2^W.
    mac = build_mac(32)
    a = np.repeat(np.arange(-128, 128), 256)
    w = np.tile(np.arange(-128, 128), 256)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1 << 32, a.size, dtype=np.int64)
    sums, arrival = simulate(mac, T.DEFAULT, a, w, x, rng)
    got = (sums.astype(np.int64) << np.arange(32)).sum(1)
    assert np.array_equal(got, (x + a * w) & 0xFFFFFFFF)
    # ...and no sum bit ever settles after the worst-case path by more than
    # the variation allows (10 sigma of a path of that depth).
    assert arrival.max() < worst_case_path(mac, T.DEFAULT) * (1 + 10 * T.DEFAULT.sigma_gate)


MODELS = ["event", "static"]
DENSE = [0.42 + 0.01 * i for i in range(49)]  # 0.42 .. 0.90 V: where the event model's errors begin


@pytest.mark.parametrize("model", MODELS)
def test_monotone_in_voltage_and_frequency(model):
    p = T.error_probabilities(DENSE, model=model).numpy()       # [V, W]
    assert p.shape == (49, 32) and p.dtype == np.float64
    assert p.max() > 1e-3, "the grid must reach voltages where bits err"
    assert np.all(np.diff(p, axis=0) <= 1e-15), "P_b must not grow with V"
    for f_lo, f_hi in [(0.5, 0.7), (0.7, 0.9), (0.9, 1.4)]:
        lo = T.error_probabilities(DENSE, ArrayConfig(freq_ghz=f_lo), model=model).numpy()
        hi = T.error_probabilities(DENSE, ArrayConfig(freq_ghz=f_hi), model=model).numpy()
        assert np.all(hi >= lo - 1e-15), "P_b must not shrink with f"


def test_static_uniform_ripple_errs_more_in_higher_bits():
    p = T.error_probabilities(GRID, model="static").numpy()
    assert np.all(np.diff(p, axis=1) >= -1e-15), "uniform operands, ripple: P_b non-decreasing in b"


@pytest.mark.parametrize("model,low,bits,floor", [("event", 0.45, 4, 1e-3), ("event", 0.5, 1, 1e-6),
                                                  ("static", 0.5, 4, 1e-6)])
def test_guard_band_at_nominal_and_errors_at_low_voltage(model, low, bits, floor):
    p = T.error_probabilities([0.9, low], model=model).numpy()
    assert p[0].max() < 1e-12
    assert p[1, -bits:].min() > floor, f"at {low} V the top bits must err"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("option,value", [("guard_band", 0.1), ("vth", 0.35), ("alpha", 1.6)])
def test_less_margin_means_more_errors(model, option, value):
    volts = [0.5, 0.55, 0.6] if model == "event" else [0.55, 0.6]
    base = T.error_probabilities(volts, model=model).numpy()
    other = T.error_probabilities(volts, model=model, **{option: value}).numpy()
    assert np.all(other >= base - 1e-15) and other.sum() > base.sum()


def _compare(counts, n, p):
    """Each measurable bit's count within 5 binomial sigma plus the model
    tolerance of n * P_b; returns how many (voltage, bit) cells were checked."""
    checked = 0
    for i in range(p.shape[0]):
        for b in range(p.shape[1]):
            if p[i, b] <= 1e-4:
                continue
            mean = n * p[i, b]
            bound = 5 * math.sqrt(n * p[i, b] * (1 - p[i, b])) + MODEL_TOLERANCE * mean
            assert abs(counts[i, b] - mean) <= bound, (i, b, counts[i, b], mean, bound)
            checked += 1
    return checked


@pytest.mark.parametrize("opts,volts", [
    ({}, [0.5, 0.495, 0.49, 0.485, 0.48, 0.47]),
    ({"guard_band": 0.1}, [0.76, 0.74, 0.72, 0.7, 0.68, 0.66]),
])
def test_analytic_matches_monte_carlo_uniform(opts, volts):
    n = 100_000
    p = T.error_probabilities(volts, model="static", **opts).numpy()
    counts = monte_carlo(volts, n=n, tech=T.TechParams(**opts), seed=11)
    measurable_voltages = sum(1 for row in p if row.max() > 1e-4)
    assert measurable_voltages >= 5
    assert _compare(counts, n, p) >= 40


def test_analytic_matches_monte_carlo_empirical():
    # Skewed, sparse int8 operands, like post-ReLU activations and small weights.
    values = np.arange(-128, 128)
    act = np.where(values >= 0, np.exp(-values / 20.0), 0.0)
    act[128] += 3.0  # many zeros
    weight = np.exp(-np.abs(values) / 15.0)
    ops = T.EmpiricalOperands(act, weight, rows=32)
    volts = [0.545, 0.54, 0.535, 0.53, 0.52, 0.5, 0.49]
    n = 100_000
    p = T.error_probabilities(volts, model="static", operands=ops).numpy()
    counts = monte_carlo(volts, n=n, operands=ops, seed=12)
    assert sum(1 for row in p if row.max() > 1e-4) >= 5
    assert _compare(counts, n, p) >= 20
    # Real partial sums make the MSBs fail first: sign-extension carry chains.
    assert p[-1, 31] > T.error_probabilities([0.49], model="static").numpy()[0, 31]


# ---- the table file --------------------------------------------------------

def test_table_roundtrip(tmp_path):
    table = T.make_table(GRID, ArrayConfig(), 32)
    path = tmp_path / "t.json"
    T.save_table(table, str(path))
    back = T.load_table(str(path))
    assert back.voltages == table.voltages and back.acc_bits == 32
    assert torch.equal(back.tensor(), T.error_probabilities(GRID))
    assert torch.equal(back.p_bits(0.5), back.tensor()[0])
    assert back.params["tech"]["guard_band"] == T.DEFAULT.guard_band
    assert back.params["model"] == "event" and back.layers == {}


def test_table_with_layers_roundtrip(tmp_path):
    rows = lambda x: [[x] * 8, [x / 2] * 8]  # noqa: E731
    table = T.ErrorTable([0.5, 0.6], rows(1e-3), 0.7, 8, {"model": "event"}, {"a": rows(2e-3), "b": rows(0.0)})
    path = tmp_path / "t.json"
    T.save_table(table, str(path))
    back = T.load_table(str(path))
    assert json.loads(path.read_text())["version"] == 2 and back.layers == table.layers
    assert torch.equal(back.p_bits(0.6, "a"), torch.full((8,), 1e-3, dtype=torch.float64))
    rates = back.rates(0.5)
    assert list(rates) == ["a", "b"] and float(rates["a"][0]) == 2e-3 and float(rates["b"].sum()) == 0
    with pytest.raises(ValueError, match="no layer 'c'"):
        back.p_bits(0.5, "c")
    with pytest.raises(ValueError, match="not on the table's grid"):
        back.rates(0.55)


def _doc(**over):
    doc = {"format": "pyvs-error-table", "version": 1, "freq_ghz": 0.7, "acc_bits": 8,
           "voltages": [0.5, 0.6], "p": [[0.0] * 8, [0.0] * 8]}
    doc.update(over)
    return doc


@pytest.mark.parametrize("doc,match", [
    (_doc(p=[[0.0] * 7, [0.0] * 8]), "must have acc_bits = 8 entries"),
    (_doc(p=[[0.0] * 8]), "one row per voltage"),
    (_doc(p=[[float("nan")] + [0.0] * 7, [0.0] * 8]), "is not a probability"),
    (_doc(p=[[1.5] + [0.0] * 7, [0.0] * 8]), "is not a probability"),
    (_doc(p=[[-0.1] + [0.0] * 7, [0.0] * 8]), "is not a probability"),
    (_doc(voltages=[0.6, 0.5]), "strictly increasing"),
    (_doc(voltages=[0.5, 0.5]), "strictly increasing"),
    (_doc(acc_bits=40), "acc_bits .the accumulator width. must be an integer between 8 and 32"),
    (_doc(freq_ghz=-1), "freq_ghz must be a positive number"),
    (_doc(format="other"), "is not a pyvs error table"),
    (_doc(version=99), "unsupported error-table version"),
    (_doc(version=2, layers=[]), "layers must be an object"),
    (_doc(version=2, layers={"a": [[0.0] * 8]}), "layer 'a': .*one row per voltage"),
    (_doc(version=2, layers={"a": [[0.0] * 8, [2.0] + [0.0] * 7]}), "layer 'a': .*not a probability"),
    (_doc(voltages=[True, 0.6]), "voltage True is not a positive number"),
    (_doc(p=[[True] + [0.0] * 7, [0.0] * 8]), r"p\[0\]\[0\] = True is not a probability"),
    (_doc(version=True), "unsupported error-table version True"),
    (_doc(acc_bits=True), "must be an integer between 8 and 32"),
    (_doc(freq_ghz=True), "freq_ghz must be a positive number"),
])
def test_malformed_table_is_rejected(tmp_path, doc, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match):
        T.load_table(str(path))


def test_a_table_path_must_be_a_file_name(tmp_path):
    with pytest.raises(TypeError, match="path must be a file name"):
        T.load_table(0)  # open(0) would read standard input
    with pytest.raises(ValueError, match="cannot be read"):
        T.load_table(str(tmp_path))  # a folder


def test_unreadable_tables_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        T.load_table(str(tmp_path / "missing.json"))
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        T.load_table(str(tmp_path / "junk.json"))


# ---- bad input -------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: T.error_probabilities([0.3]), r"outside the timing model's range \(Vth = 0.3, 1.2\]"),
    (lambda: T.error_probabilities([0.2, 0.9]), "0.2 V is outside the timing model's range"),
    (lambda: T.error_probabilities([]), "voltage grid is empty"),
    (lambda: T.error_probabilities([float("nan")]), "voltage must be a finite number"),
    (lambda: T.error_probabilities([1.3]), "1.3 V is outside the timing model's range"),
    (lambda: T.error_probabilities([0.9], ArrayConfig(freq_ghz=-0.7)), "freq_ghz must be a positive number"),
    (lambda: T.error_probabilities([0.9], ArrayConfig(freq_ghz=0.0)), "must be a positive number"),
    (lambda: T.error_probabilities([0.9], 0.7), "array must be a pyvs.hardware.ArrayConfig"),
    (lambda: T.error_probabilities([0.5], ArrayConfig(v_nominal=0.25)), "nominal supply 0.25 V is outside"),
    (lambda: T.error_probabilities([0.9], acc_bits=7), "between 8 and 32"),
    (lambda: T.error_probabilities([0.9], acc_bits=33), "between 8 and 32"),
    (lambda: T.error_probabilities([0.9], adder="magic"), "unknown adder"),
    (lambda: T.error_probabilities([0.9], adder="magic", model="static"), "unknown adder"),
    (lambda: T.error_probabilities([0.9], model="magic"), "unknown timing model 'magic'"),
    (lambda: T.TimingSpec.named("magic"), "unknown timing model 'magic'"),
    (lambda: T.TimingSpec.named("event", operands="uniform"), "sets .'operands'. itself"),
    (lambda: T.TimingSpec("event", T.TimingOptions(model="static")), "sets its own options.model"),
    (lambda: T.TimingSpec.named("event", calibration_images=1), "calibration images must be"),
    (lambda: T.error_probabilities([0.9], colour="red"), "unknown timing-model options"),
    (lambda: T.error_probabilities([0.9], vth=0.95), r"nominal supply 0.9 V is outside the timing model's range \(Vth = 0.95"),
    (lambda: T.error_probabilities([0.9], guard_band=-0.1), "guard_band must be >= 0"),
    (lambda: T.EmpiricalOperands([1.0] * 10, [1.0] * 256), "256 bins"),
    (lambda: T.EmpiricalOperands([0.0] * 256, [1.0] * 256), "not all zero"),
])
def test_bad_input_is_a_value_error(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("W", [8, 12, 16, 24])
def test_narrow_accumulators(W, model):
    p = T.error_probabilities([0.42, 0.45, 0.5, 0.9], acc_bits=W, model=model).numpy()
    assert p.shape == (4, W) and p[3].max() < 1e-12 and p[0].max() > 1e-3
    assert np.all(np.diff(p, axis=0) <= 1e-15)


def test_timing_command_writes_table_and_heatmap(tmp_path, capsys):
    from pyvs.cli import main
    out, png = tmp_path / "t.json", tmp_path / "t.png"
    assert main(["timing", "--vmin", "0.5", "--vmax", "0.6", "--step", "0.05",
                 "--out", str(out), "--plot", str(png)]) == 0
    table = T.load_table(str(out))
    assert table.voltages == [0.5, 0.55, 0.6]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert " 0.500 " in capsys.readouterr().out
    assert main(["timing", "--vmin", "0.2", "--out", "", "--plot", ""]) == 2
    assert "pyvs timing: voltage 0.2 V is outside the timing model's range" in capsys.readouterr().err
