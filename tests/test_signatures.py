"""Joint error patterns per operand pair and their tables per signature
(pyvs.timing.signatures): the signature against bit-by-bit arithmetic, the
intervals against the waveforms read directly, the patterns' marginals
against the event model's histograms, and the tables' bookkeeping."""
import numpy as np
import pytest

import pyvs.timing as T
from pyvs.hardware import ArrayConfig
from pyvs.timing import signatures as S
from pyvs.timing.event import EventModel
from pyvs.timing.operands import Pairs
from pyvs.timing.waveforms import probabilities, simulate, unpack

MODEL = EventModel(32, T.DEFAULT)
W = 32


def _real_like(n, seed):
    """Partial sums small against 2^32, of either sign, as real layers make
    them (uniform 32-bit sums would never cross sign)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-40000, 40000, n) & 0xFFFFFFFF
    prev_x = rng.integers(-40000, 40000, n) & 0xFFFFFFFF
    return Pairs(rng.integers(0, 256, n), rng.integers(0, 256, n), rng.integers(-128, 128, n), prev_x, x)


@pytest.fixture(scope="module")
def real():
    pairs = _real_like(12000, 3)
    tcs = MODEL.capture_times([0.5, 0.51, 0.52, 0.55], ArrayConfig())
    low = tcs.min() - 12 * MODEL.tech.sigma_gate * np.sqrt(tcs.min() * MODEL.d2)
    return pairs, tcs, S.wrong_intervals(MODEL, pairs, low, batch=5000)


def test_the_signature_is_the_run_of_differing_top_bits():
    rng = np.random.default_rng(0)
    x = np.r_[rng.integers(0, 1 << 32, 300, dtype=np.int64), rng.integers(-70000, 70000, 300) & 0xFFFFFFFF,
              0, 0xFFFFFFFF, 0x80000000, 0]
    a = np.r_[rng.integers(-128, 256, 600), 0, 1, 0, -1]
    w = np.r_[rng.integers(-128, 128, 600), 0, 1, 0, 1]
    got = S.signature(x, a, w, W)
    for i in range(len(x)):
        px, py = format(int(x[i]), "032b"), format((int(a[i]) * int(w[i])) % (1 << W), "032b")
        run = 0
        while run < W and px[run] != py[run]:
            run += 1
        assert got[i] == run, (x[i], a[i], w[i])
    assert list(got[-4:]) == [0, W - 1, 1, W]


def test_intervals_are_the_waveforms_wrong_stretches(real):
    # Without variation each pair's pattern is read off the waveforms
    # directly: the bits whose value at the capture step is not the final one.
    pairs, tcs, iv = real
    prev, cur = pairs.batch(0, len(pairs))
    waves = simulate(MODEL.mac, prev, cur, MODEL.delays)
    seen = 0
    for tc in tcs:
        step = int(np.floor(tc / MODEL.dt))   # the value at tc is the one at the last step <= tc
        want = np.zeros(len(pairs), dtype=np.int64)
        for b, wave in enumerate(waves):
            wrong = unpack(wave.window(step, step + 1), len(pairs))[0] ^ unpack(wave.final, len(pairs))
            want |= wrong.astype(np.int64) << b
        pair, mask, p = S.pattern_probabilities(iv, tc, 0.0, MODEL.d2)
        got = np.zeros(len(pairs), dtype=np.int64)
        got[pair] = mask
        assert np.all(p == 1.0)
        assert np.array_equal(got, want), tc
        seen += int(np.count_nonzero(want))
    assert seen > 0


def test_the_patterns_marginals_are_the_event_models_rates(real):
    pairs, tcs, iv = real
    h = MODEL.histograms(pairs)
    for tc in tcs:
        want = probabilities(h, [tc], MODEL.tech.sigma_gate, MODEL.d2)[0][0]
        table = S.signature_table(pairs, iv, tc, MODEL.tech.sigma_gate, MODEL.d2, W)
        got = table.bit_rates()
        assert np.allclose(got, want, rtol=1e-9, atol=1e-300), tc
        assert table.counts.sum() == len(pairs)
    assert want.max() == 0 and np.max(S.signature_table(pairs, iv, tcs[0], MODEL.tech.sigma_gate, MODEL.d2,
                                                        W).bit_rates()) > 1e-3


def test_each_pairs_patterns_are_a_distribution_that_grows_as_the_capture_comes_earlier(real):
    pairs, tcs, iv = real
    totals = []
    for tc in tcs:
        pair, mask, p = S.pattern_probabilities(iv, tc, MODEL.tech.sigma_gate, MODEL.d2)
        assert np.all(mask != 0) and np.all(p > 0)
        per_pair = np.bincount(pair, weights=p, minlength=len(pairs))
        assert per_pair.max() <= 1 + 1e-12
        assert len(np.unique(pair * (1 << 32) + mask)) == len(pair)  # one row per (pair, pattern)
        totals.append(per_pair)
    # capture times rise with the voltage: every pair errs less often
    for earlier, later in zip(totals, totals[1:]):
        assert np.all(later <= earlier + 1e-12)


def test_halves_add_up_and_errors_sit_on_the_long_runs(real):
    pairs, tcs, iv = real
    tc = tcs[1]
    whole = S.signature_table(pairs, iv, tc, MODEL.tech.sigma_gate, MODEL.d2, W)
    halves = [S.signature_table(pairs, iv, tc, MODEL.tech.sigma_gate, MODEL.d2, W, np.arange(h, len(pairs), 2))
              for h in (0, 1)]
    assert np.array_equal(halves[0].counts + halves[1].counts, whole.counts)
    total = {int(m): 0.0 for m in whole.patterns}
    for t in halves:
        for j, m in enumerate(t.patterns):
            total[int(m)] += t.mass[:, j].sum()
    assert np.allclose([total[int(m)] for m in whole.patterns], whole.mass.sum(0), rtol=1e-12)
    # A carry that ripples into the top bits needs a run of differing top
    # bits: a partial sum and a product of the same sign (L = 0) never err.
    rate = whole.rate()
    assert rate[0] == 0 and rate[17:].max() > 0
    assert 0 < whole.multi_bit_share() < 1


def test_signature_tables_of_layers_and_halves():
    pairs = {"a": _real_like(3000, 5), "b": _real_like(2000, 6)}
    tcs = dict(zip([0.5, 0.52], MODEL.capture_times([0.5, 0.52], ArrayConfig())))
    tables = S.signature_tables(MODEL, pairs, tcs, halves=True)
    assert set(tables) == {(n, v, h) for n in pairs for v in tcs for h in (None, 0, 1)}
    for (n, v, h), t in tables.items():
        assert t.counts.sum() == (len(pairs[n]) if h is None else len(range(h, len(pairs[n]), 2)))
