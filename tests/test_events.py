"""The event-driven timing model: the simulator's waveforms against exact
arithmetic, static timing and hand timing; the pulse-rejection rule; the
Gaussian smoothing against an explicit Monte Carlo over dies; and the
properties its tables must have."""
import numpy as np
import pytest

import pyvs.timing as T
from pyvs.hardware import ArrayConfig
from pyvs.timing.event import EventModel, uniform_histograms
from pyvs.timing.operands import Pairs, uniform_pairs
from pyvs.timing.probabilities import UNIFORM_PAIRS
from pyvs.timing.waveforms import (Wave, _survival, gate_wave, histograms, horizon_steps, nominal_delays, pack,
                                   probabilities, simulate, split_histograms, unpack)

from gates import sampled_delays, static_arrivals

MODEL = EventModel(32, T.DEFAULT)


def _values(wave: Wave, n: int, t0: int, t1: int) -> np.ndarray:
    """bool [t1 - t0, n]: the wave's value at steps t0 .. t1 - 1."""
    return unpack(wave.window(t0, t1), n)


def _settled(waves, n):
    return (np.stack([unpack(w.final, n) for w in waves]).astype(np.int64) << np.arange(32)[:, None]).sum(0)


def test_settled_values_are_the_exact_mac_for_every_activation_and_weight():
    # Every activation the op takes (uint8 and int8: -128..255) times every
    # int8 weight, from random previous operands: the sum bits settle at
    # x + a * w mod 2^32.
    rng = np.random.default_rng(0)
    a = np.repeat(np.arange(-128, 256), 256)
    w = np.tile(np.arange(-128, 128), 384)
    x = rng.integers(0, 1 << 32, a.size, dtype=np.int64)
    prev = {"a": rng.integers(-128, 256, a.size), "w": w, "x": rng.integers(0, 1 << 32, a.size, dtype=np.int64)}
    waves = simulate(MODEL.mac, prev, {"a": a, "w": w, "x": x}, MODEL.delays)
    assert np.array_equal(_settled(waves, a.size), (x + a * w) & 0xFFFFFFFF)
    # ...and every wave starts from the previous operands' settled sum.
    init = (np.stack([unpack(wv.init, a.size) for wv in waves]).astype(np.int64) << np.arange(32)[:, None]).sum(0)
    assert np.array_equal(init, (prev["x"] + prev["a"] * w) & 0xFFFFFFFF)


@pytest.mark.parametrize("inertial", [True, False])
def test_last_transition_never_comes_after_the_static_arrival(inertial):
    pairs = uniform_pairs(4096, 32, np.random.default_rng(1), unsigned=True)
    prev, cur = pairs.batch(0, len(pairs))
    h = histograms(simulate(MODEL.mac, prev, cur, MODEL.delays, inertial), len(pairs), MODEL.dt, MODEL.horizon)
    arrival = static_arrivals(MODEL.mac, MODEL.delays)
    for b in range(32):
        steps = np.flatnonzero(h.last[b])
        assert len(steps) and steps.max() <= arrival[b], (b, steps.max(), arrival[b])
    assert h.last.sum() <= 32 * len(pairs)


def test_groups_simulated_together_count_as_if_simulated_alone():
    # Layers of different sizes, batches that cut through them: the
    # histograms of each are those of simulating it by itself.
    rng = np.random.default_rng(4)
    groups = {"a": uniform_pairs(700, 32, rng), "b": _real_like(1500, 8), "c": uniform_pairs(3, 32, rng)}
    together = MODEL.histograms_of(groups, batch=1000)
    for name, pairs in groups.items():
        prev, cur = pairs.batch(0, len(pairs))
        alone = histograms(simulate(MODEL.mac, prev, cur, MODEL.delays), len(pairs), MODEL.dt, MODEL.horizon)
        got = together[name]
        assert got.n == alone.n and np.array_equal(got.last, alone.last)
        assert np.array_equal(got.ends_minus_starts, alone.ends_minus_starts)
    with pytest.raises(ValueError, match="no empty group"):
        split_histograms([], [0, 2, 2], MODEL.dt, MODEL.horizon)


def _carry_chain(k: int, inertial: bool = True):
    """x: 0 -> 2^k - 1 with a = w = 1 in both cycles (the product, 1, does
    not change): adding 1 ripples a carry through bits 0 .. k-1."""
    prev = {"a": np.array([1]), "w": np.array([1]), "x": np.array([0])}
    cur = {"a": np.array([1]), "w": np.array([1]), "x": np.array([(1 << k) - 1])}
    return simulate(MODEL.mac, prev, cur, MODEL.delays, inertial)


@pytest.mark.parametrize("inertial", [True, False])
def test_a_hand_timed_carry_chain(inertial):
    # By hand, with d_and = d_mux = 1, d_xor = 1.5 (units of d(V_nom); the
    # step is 0.5): x's bits rise at 0; p_0 = x_0 ^ 1 falls at 1.5, g_0 =
    # x_0 & 1 rises at 1; the carry c_1 = p_0 ? c_0 : g_0 rises at 2.5, and
    # c_j = 1.5 + j. s_0 = p_0 ^ c_0 falls at 3. For 1 <= j < k, p_j rises at
    # 1.5 and c_j later, so p_j ^ c_j pulses over [1.5, 1.5 + j): s_j glitches
    # over [3, 3 + j) unless the pulse is no longer than the XOR's 1.5
    # (inertial: j = 1 is rejected). s_k = c_k rises at 3 + k.
    k = 6
    waves = _carry_chain(k, inertial)
    assert MODEL.dt == 0.5
    steps = lambda t: int(round(t / MODEL.dt))  # noqa: E731
    end = MODEL.horizon
    for b, wave in enumerate(waves):
        value = _values(wave, 1, 0, end)[:, 0]
        expect = np.zeros(end, dtype=bool)
        if b == 0:
            expect[:steps(3.0)] = True
        elif b < k and (b >= 2 or not inertial):
            expect[steps(3.0): steps(3.0 + b)] = True
        elif b == k:
            expect[steps(3.0 + k):] = True
        assert np.array_equal(value, expect), (b, np.flatnonzero(value), np.flatnonzero(expect))


@pytest.mark.parametrize("width", [1, 2, 3, 4, 6])
def test_inertial_delay_rejects_pulses_no_longer_than_the_gate_delay(width):
    d, n = 3, 1
    one, zero = pack(np.ones(n, bool)), pack(np.zeros(n, bool))
    pulse = Wave(5, np.stack([one] * width), zero, zero)    # high over steps 5 .. 5 + width - 1
    const1 = Wave(0, np.empty((0, 1), np.uint64), one, one)
    out = gate_wave("and", [pulse, const1], d, inertial=True)
    got = _values(out, n, 0, 20)[:, 0]
    expect = np.zeros(20, bool)
    if width > d:
        expect[5 + d: 5 + d + width] = True
    assert np.array_equal(got, expect)
    transport = _values(gate_wave("and", [pulse, const1], d, inertial=False), n, 0, 20)[:, 0]
    assert np.array_equal(transport, np.isin(np.arange(20), np.arange(5 + d, 5 + d + width)))


def _raw(h, tc, sigma, d2):
    """P(wrong) and P(late) without the clip that keeps rounding in [0, 1]."""
    S = _survival(np.arange(h.last.shape[1]) * h.dt, np.asarray(tc, float), sigma, d2)
    return (h.ends_minus_starts @ S / h.n).T, (h.last @ S / h.n).T


@pytest.mark.parametrize("sigma", [0.0, 0.05])
def test_wrong_implies_late(sigma):
    # A register can be caught wrong only while its bit is still changing:
    # from the histograms, P(wrong) <= P(late) at every capture time, and at
    # sigma = 0 exactly what the waveforms say per sample.
    pairs = uniform_pairs(2048, 32, np.random.default_rng(2))
    prev, cur = pairs.batch(0, len(pairs))
    waves = simulate(MODEL.mac, prev, cur, MODEL.delays)
    h = histograms(waves, len(pairs), MODEL.dt, MODEL.horizon)
    tc = np.arange(0.25, MODEL.horizon * MODEL.dt, 0.5)   # between steps
    wrong, late = _raw(h, tc, sigma, MODEL.d2)
    assert np.all(wrong <= late + 1e-12) and wrong.max() > 0.1 and np.all(wrong >= -1e-12)
    if sigma == 0:
        for b in (0, 12, 31):
            v = _values(waves[b], len(pairs), 0, MODEL.horizon)
            final = unpack(waves[b].final, len(pairs))
            steps = np.floor(tc / MODEL.dt).astype(int)   # the value held at tc
            assert np.allclose(wrong[:, b], (v[steps] != final).mean(1))
            changes_after = [(v[s + 1:] != v[s:-1]).any(0).mean() if s + 1 < len(v) else 0.0 for s in steps]
            assert np.allclose(late[:, b], changes_after)


def _real_like(n: int, seed: int) -> Pairs:
    """Small partial sums of either sign, uint8 activations: what the
    dataflow feeds a PE (pyvs.dataflow captures the real ones)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3000, 3000, (2, n)) & 0xFFFFFFFF
    return Pairs(rng.integers(0, 256, n), rng.integers(0, 256, n), rng.integers(-128, 128, n), x[0], x[1])


def test_most_wrong_top_bits_keep_their_value():
    # The observation: when the partial sum's sign differs from the
    # sign-extended product, the high cells propagate and their sum bits
    # glitch until the carry arrives: most top bits that are ever wrong hold
    # the same value in both cycles, so "late and toggles" is not the model.
    pairs = _real_like(8192, 6)
    prev, cur = pairs.batch(0, len(pairs))
    waves = simulate(MODEL.mac, prev, cur, MODEL.delays)
    n = len(pairs)
    for b in (28, 29, 30, 31):
        final = unpack(waves[b].final, n)
        ever_wrong = (_values(waves[b], n, 0, MODEL.horizon) != final).any(0)
        kept = unpack(waves[b].init, n) == final
        assert ever_wrong.sum() > 0.3 * n and (ever_wrong & kept).sum() > 0.6 * ever_wrong.sum()


def test_real_partial_sums_err_far_more_than_uniform_ones():
    # Uniform accumulators have random high bits, hence short carry chains;
    # small sign-extended partial sums ripple through every high bit.
    real = MODEL.probabilities(MODEL.histograms(_real_like(8192, 7)), [0.5], ArrayConfig())[0][0]
    uniform = T.error_probabilities([0.5])[0].numpy()
    assert np.all(real[28:] > 100 * uniform[28:]) and real[31] > 1e-3


def test_smoothing_matches_a_monte_carlo_over_dies():
    # Each die draws every gate's delay N(d, (sigma d)^2), simulated on a
    # fine time step; the average over dies of what each die's register
    # captures is what the analytic Gaussian smoothing of one nominal
    # simulation approximates (README: within ~15 % where rates >= 1e-2).
    rng = np.random.default_rng(5)
    pairs = uniform_pairs(1024, 32, rng)
    prev, cur = pairs.batch(0, len(pairs))
    volts = [0.44, 0.445, 0.45]
    tc = MODEL.capture_times(volts, ArrayConfig())
    wrong, _ = probabilities(MODEL.histograms(pairs), tc, T.DEFAULT.sigma_gate, MODEL.d2)
    dt, dies, mc = 0.025, 24, np.zeros_like(wrong)
    for _ in range(dies):
        delays = sampled_delays(MODEL.mac, T.DEFAULT, dt, rng)
        h = histograms(simulate(MODEL.mac, prev, cur, delays), len(pairs), dt, horizon_steps(MODEL.mac, delays))
        mc += probabilities(h, tc, 0.0, MODEL.d2)[0] / dies
    checked = 0
    for i in range(len(volts)):
        sel = wrong[i] >= 1e-2
        if sel.any():
            assert 0.8 <= mc[i][sel].sum() / wrong[i][sel].sum() <= 1.25, (volts[i], mc[i][sel], wrong[i][sel])
            assert np.all(np.abs(mc[i][sel] / wrong[i][sel] - 1) < 0.5)
            checked += int(sel.sum())
    assert checked >= 20


@pytest.mark.parametrize("late", [False, True])
def test_tables_are_monotone_and_wrong_is_below_late(late):
    model, h = uniform_histograms(32, T.DEFAULT, "ripple", 0.7, UNIFORM_PAIRS, 0)  # the default table's
    volts = np.round(np.arange(0.42, 0.901, 0.005), 3)
    for f in (0.5, 0.7, 1.0):
        wrong, lateness = model.probabilities(h, volts, ArrayConfig(freq_ghz=f))
        p = lateness if late else wrong
        assert np.all(np.diff(p, axis=0) <= 1e-15), "must not grow with V"
        assert np.all(wrong <= lateness + 1e-15)
        assert p[-1].max() < 1e-12, "no error at 0.9 V with the default guard-band"
        if f > 0.5:
            slower = model.probabilities(h, volts, ArrayConfig(freq_ghz=f * 0.8))[1 if late else 0]
            assert np.all(p >= slower - 1e-15), "must not shrink with f"


def test_tables_are_reproducible_from_the_seed():
    a = T.error_probabilities([0.45, 0.5], seed=3)
    assert np.array_equal(a.numpy(), T.error_probabilities([0.45, 0.5], seed=3).numpy())
    assert not np.array_equal(a.numpy(), T.error_probabilities([0.45, 0.5], seed=4).numpy())


@pytest.mark.parametrize("build,match", [
    (lambda: Pairs([], [], [], [], []), "non-empty"),
    (lambda: Pairs([1, 2], [1], [1], [1], [1]), "one length"),
    (lambda: Pairs([300], [1], [1], [1], [1]), "uint8 or int8"),
    (lambda: Pairs([1], [1], [200], [1], [1]), "w must hold int8"),
    (lambda: MODEL.histograms(Pairs([1], [1], [1], [-1], [1])), "32-bit patterns"),
    (lambda: MODEL.histograms(Pairs([1], [1], [1], [1], [1 << 33])), "32-bit patterns"),
    (lambda: T.error_probabilities([0.9], operands=Pairs([1], [1], [1], [1], [1]), model="static"),
     "operand pairs are for the event-driven"),
    (lambda: T.error_probabilities([0.25]), "outside the timing model's range"),
    (lambda: T.error_probabilities([0.9], model="dynamic"), "unknown timing model"),
])
def test_bad_operands_are_a_value_error(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_nominal_delays_are_exact_multiples_of_the_step():
    d = nominal_delays(MODEL.mac, T.DEFAULT, MODEL.dt)
    kinds = [g.kind for g in MODEL.mac.net.gates]
    assert all(di * MODEL.dt == T.DEFAULT.gate_delay(k) for di, k in zip(d, kinds))
