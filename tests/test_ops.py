"""The systolic matmul op: every path == reference bit for bit, the clean
GEMM, determinism, statistics of the injected events, tracing, CUDA ==
CPU, and bad input."""
import math

import pytest
import torch

import pyvs
from pyvs import reference as R

from conftest import CUDA, cpu_and_cuda, needs_cuda
from opdata import W32, conditioned_regime, p_regime, rand_int8

# ---- kernels against the reference ------------------------------------------

SHAPES = [  # (M, K, N): every size of {1, 3, 17, 255, 256, 257, 600} appears
    (1, 1, 1), (3, 255, 17), (17, 256, 3), (255, 257, 1), (1, 3, 600),
    (257, 600, 3), (600, 17, 1), (256, 1, 255), (3, 600, 17),
]


IMPLS = ("simple", "fast", "auto")


def assert_all_impls_match(a, w, p, expected, **args):
    """Every path of the op (simple kernel, GEMM + patches, automatic
    choice) gives exactly `expected` (out, stats)."""
    for impl in IMPLS:
        out, stats = pyvs.systolic_matmul(a, w, p, impl=impl, **args)
        assert out.dtype == torch.int32 and out.shape == expected[0].shape, impl
        assert stats.dtype == torch.int64 and stats.shape == expected[1].shape, impl
        assert torch.equal(out, expected[0]), (impl, int((out != expected[0]).sum()))
        assert torch.equal(stats, expected[1]), impl


@pytest.mark.parametrize("regime", ["zero", "tiny", "large", "mixed"])
@pytest.mark.parametrize("rows", [1, 7, 256])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cpu_matches_reference(shape, rows, regime):
    M, K, N = shape
    gen = torch.Generator().manual_seed(hash((shape, rows, regime)) % 2**31)
    a, w = rand_int8((M, K), gen), rand_int8((K, N), gen)
    p, protect = p_regime(regime)
    args = dict(protect=protect, seed=12345, layer=7, row_offset=11, rows=rows)
    ref = R.systolic_matmul(a, w, p, **args)
    assert ref[0].shape == (M, N) and ref[1].shape == (2, W32)
    assert_all_impls_match(a, w, p, ref, **args)


@pytest.mark.parametrize("regime", ["guarded", "mixed", "tiny"])
@pytest.mark.parametrize("rows", [7, 256])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_te_drop_matches_reference_on_every_path(shape, rows, regime):
    # TE-Drop: a MAC with a detected error keeps the partial sum from before it.
    M, K, N = shape
    gen = torch.Generator().manual_seed(hash((shape, rows, regime, "drop")) % 2**31)
    a, w = rand_int8((M, K), gen, torch.uint8), rand_int8((K, N), gen)
    p, protect = p_regime(regime)
    args = dict(protect=protect, seed=4321, layer=2, row_offset=5, rows=rows, drop=True)
    ref = R.systolic_matmul(a, w, p, **args)
    assert_all_impls_match(a, w, p, ref, **args)


@pytest.mark.parametrize("regime", ["zero", "rare", "heavy", "certain"])
@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("rows", [7, 256])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_conditioned_injection_matches_reference_on_every_path(shape, rows, drop, regime):
    M, K, N = shape
    gen = torch.Generator().manual_seed(hash((shape, rows, regime, "cond")) % 2**31)
    a, w = rand_int8((M, K), gen, torch.uint8), rand_int8((K, N), gen)
    pats, joint, protect = conditioned_regime(regime)
    args = dict(protect=protect, seed=99, layer=4, row_offset=3, rows=rows, drop=drop)
    ref = R.systolic_matmul(a, w, None, patterns=pats, joint=joint, **args)
    assert_all_impls_match(a, w, None, ref, patterns=pats, joint=joint, **args)


@pytest.mark.parametrize("regime", ["rare", "heavy", "certain"])
@pytest.mark.parametrize("W,rows", [(8, 5), (13, 100), (20, 7)])
def test_conditioned_injection_on_narrow_accumulators_matches_reference(W, rows, regime):
    # W < 32: tiles wrap, and tiles opened for candidates that are all
    # rejected must add nothing.
    gen = torch.Generator().manual_seed(W * rows)
    a, w = rand_int8((23, 260), gen), rand_int8((260, 9), gen)
    pats, joint, protect = conditioned_regime(regime, W)
    args = dict(protect=protect, seed=7, layer=1, row_offset=0, rows=rows)
    ref = R.systolic_matmul(a, w, None, patterns=pats, joint=joint, **args)
    assert_all_impls_match(a, w, None, ref, patterns=pats, joint=joint, **args)


@pytest.mark.parametrize("regime", ["zero", "rare", "heavy", "certain"])
@pytest.mark.parametrize("W,K", [(32, 0), (32, 300), (13, 40)])
def test_conditioned_tables_match_reference(regime, W, K):
    pats, joint, _ = conditioned_regime(regime, W)
    got = torch.ops.pyvs._fault_tables(torch.zeros(W, dtype=torch.float64), K, pats, joint)
    gap, accept, cum, patterns, _ = R.conditioned_tables(pats, joint, K)
    base = K + 1 + W + W * W
    assert torch.equal(got[:K + 1], gap)
    assert torch.equal(got[base:], torch.cat([accept, cum.flatten(), patterns]))


def _signatures(a, w, W, rows):
    """Signature L of every MAC of a fault-free [M, K] x [K, N] product, int64 [M, K, N]."""
    prod = a.long()[:, :, None] * w.long()[None]
    tiles = [prod[:, k0: k0 + rows].cumsum(1) - prod[:, k0: k0 + rows] for k0 in range(0, a.shape[1], rows)]
    x = torch.cat(tiles, 1)  # the partial sum entering each MAC
    return R.signature(x % (1 << W), prod % (1 << W), W)


@pytest.mark.parametrize("impl", ["simple", "fast"])
def test_conditioned_events_are_binomial_per_signature_and_joint(impl):
    # Errors only at signatures 20 and 24: one pattern of bit 31 alone,
    # one of bits 30-31 together. Protected (replays), they leave the sums
    # fault-free, so each class's MACs can be counted on the clean product.
    gen = torch.Generator().manual_seed(8)
    M, K, N, rows = 96, 300, 40, 256
    a = torch.randint(0, 60, (M, K), generator=gen).to(torch.uint8)  # small sums of either sign
    w = rand_int8((K, N), gen)
    pats = torch.tensor([1 << 31, 3 << 30])
    joint = torch.zeros(33, 2, dtype=torch.float64)
    joint[20] = torch.tensor([0.03, 0.0], dtype=torch.float64)
    joint[24] = torch.tensor([0.0, 0.2], dtype=torch.float64)
    L = _signatures(a, w, 32, rows)
    n20, n24 = int((L == 20).sum()), int((L == 24).sum())
    assert n20 > 1000 and n24 > 1000
    _, stats = pyvs.systolic_matmul(a, w, None, protect=3 << 30, seed=5, rows=rows, impl=impl,
                                    patterns=pats, joint=joint)
    both = int(stats[1, 30])
    ok, info = within_binomial(both, n24, 0.2)
    assert ok, info
    ok, info = within_binomial(int(stats[1, 31]) - both, n20, 0.03)
    assert ok, info
    assert int(stats[0].sum()) == 0 and int(stats[1, :30].sum()) == 0


@pytest.mark.parametrize("change,message", [
    (dict(joint=None), "patterns and joint go together"),
    (dict(p=[1e-3] * 32), "must be all zeros"),
    (dict(joint=torch.zeros(32, 2, dtype=torch.float64)), r"joint must be \[W \+ 1, P\]"),
    (dict(joint=torch.full((33, 2), 0.6, dtype=torch.float64)), "sums to 1.2 > 1"),
    (dict(joint=torch.full((33, 2), -0.1, dtype=torch.float64)), "is not a probability"),
    (dict(patterns=torch.tensor([0, 1])), "not a non-empty mask"),
    (dict(patterns=torch.tensor([1 << 32, 1])), "not a non-empty mask"),
    (dict(patterns=torch.tensor([1.0, 2.0])), "patterns must be int64"),
])
def test_conditioned_bad_input_is_a_clear_error(change, message):
    gen = torch.Generator().manual_seed(1)
    a, w = rand_int8((4, 9), gen), rand_int8((9, 3), gen)
    args = dict(p=[0.0] * 32, patterns=torch.tensor([1, 2]), joint=torch.full((33, 2), 0.1, dtype=torch.float64))
    args.update(change)
    with pytest.raises((ValueError, TypeError, RuntimeError), match=message):
        pyvs.systolic_matmul(a, w, args["p"], patterns=args["patterns"], joint=args["joint"])


@pytest.mark.parametrize("regime", ["tiny", "mixed"])
@pytest.mark.parametrize("W", [32, 16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_output_stationary_is_one_tile_of_k_on_every_path(shape, W, regime):
    # An output-stationary PE adds all K products in one W-bit register:
    # the op with rows = K. Every path equals the reference, and splitting
    # the rows (row_offset) changes nothing.
    M, K, N = shape
    gen = torch.Generator().manual_seed(hash((shape, W, regime, "os")) % 2**31)
    a, w = rand_int8((M, K), gen, torch.uint8), rand_int8((K, N), gen)
    p, protect = p_regime(regime, W)
    args = dict(protect=protect & ((1 << W) - 1), seed=99, layer=5, rows=max(K, 1))
    ref = R.systolic_matmul(a, w, p, **args)
    assert_all_impls_match(a, w, p, ref, **args)
    cut = M // 2
    top = pyvs.systolic_matmul(a[:cut], w, p, row_offset=0, **args)
    bottom = pyvs.systolic_matmul(a[cut:], w, p, row_offset=cut, **args)
    assert torch.equal(torch.cat([top[0], bottom[0]]), ref[0]) and torch.equal(top[1] + bottom[1], ref[1])


@pytest.mark.parametrize("W", [8, 13, 20])
@pytest.mark.parametrize("rows", [1, 100, 300])
def test_narrow_accumulators_match_reference(W, rows):
    # Narrow accumulators wrap inside a tile: the fast path's clean GEMM then
    # runs tile by tile, and its patches sign-extend each tile.
    gen = torch.Generator().manual_seed(W * rows)
    a, w = rand_int8((9, 300), gen, torch.uint8), rand_int8((300, 5), gen)
    p = [0.01 * (b % 3) for b in range(W)]
    args = dict(protect=0b101, seed=-3, layer=1, rows=rows)
    assert_all_impls_match(a, w, p, R.systolic_matmul(a, w, p, **args), **args)


def layouts(a):
    """The same activations [G, M, K] in the layouts layers hand over: row-major,
    tap-major (a channels-last im2col: [K, M, G] in memory) and K-major."""
    G, M, K = a.shape
    return {"row-major": a, "tap-major": a.permute(2, 1, 0).contiguous().permute(2, 1, 0),
            "k-major": a.transpose(1, 2).contiguous().transpose(1, 2)}


@pytest.mark.parametrize("layout", ["row-major", "tap-major", "k-major"])
@pytest.mark.parametrize("G,M,K,N,W,rows", [(24, 37, 9, 1, 32, 256), (5, 20, 9, 1, 8, 4), (3, 11, 40, 1, 13, 16),
                                            (4, 9, 25, 3, 32, 7), (1, 30, 70, 5, 20, 33)])
@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8], ids=["int8", "uint8"])
def test_strided_activations_match_reference(layout, G, M, K, N, W, rows, dtype):
    # Depthwise convs (N = 1) take the CPU's direct clean product plus patches;
    # every path reads a with the caller's strides, no copy.
    gen = torch.Generator().manual_seed(G * M + K)
    a = layouts(rand_int8((G, M, K), gen, dtype))[layout]
    w = rand_int8((G, K, N), gen)
    p = [2e-3 * (1 + b % 5) for b in range(W)]
    args = dict(protect=0b1011 << (W - 6), seed=11, layer=2, row_offset=6, rows=rows)
    assert_all_impls_match(a, w, p, R.systolic_matmul(a.contiguous(), w, p, **args), **args)
    assert_all_impls_match(a, w, [0.0] * W, R.systolic_matmul(a.contiguous(), w, [0.0] * W, **args), **args)


@pytest.mark.parametrize("regime", ["tiny", "large", "mixed"])
def test_uint8_and_groups_match_reference(regime):
    gen = torch.Generator().manual_seed(3)
    a, w = rand_int8((4, 6, 40), gen, torch.uint8), rand_int8((4, 40, 5), gen)
    p, protect = p_regime(regime)
    args = dict(protect=protect, seed=2**64 - 1, layer=2**32 - 1, row_offset=5, rows=7)
    ref = R.systolic_matmul(a, w, p, **args)
    assert ref[0].shape == (4, 6, 5)
    assert_all_impls_match(a, w, p, ref, **args)


def test_heavy_rates_on_every_bit_match_reference():
    # Nearly every MAC has several erring bits, protected and not: the
    # patches redo almost every partial sum.
    gen = torch.Generator().manual_seed(13)
    a, w = rand_int8((23, 90), gen, torch.uint8), rand_int8((90, 11), gen)
    p = [0.04 + 0.002 * b for b in range(W32)]
    args = dict(protect=0xAAAA5555, seed=99, layer=4, row_offset=3, rows=33)
    assert_all_impls_match(a, w, p, R.systolic_matmul(a, w, p, **args), **args)


# ---- the fast path's clean GEMM --------------------------------------------

def tiled_product(a, w, W, rows):
    """Sum over K-tiles of sign_extend_W(tile sum), wrapped to int32: what the
    op returns without events, computed in int64 straight from that definition."""
    a, w = a.long(), w.long()
    K = a.shape[-1]
    total = torch.zeros(a.shape[:-1] + w.shape[-1:], dtype=torch.int64)
    for k0 in range(0, K, rows):
        tile = a[..., k0:k0 + rows] @ w[..., k0:k0 + rows, :]
        tile = tile % (1 << W)
        total += torch.where(tile >= 1 << (W - 1), tile - (1 << W), tile)
    return ((total + (1 << 31)) % (1 << 32) - (1 << 31)).to(torch.int32)


@pytest.mark.parametrize("method", ["float32", "int_mm"])
@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8], ids=["int8", "uint8"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 16, 7, 9), (1, 17, 8, 8), (3, 5, 300, 13),
                                   (2, 40, 600, 24), (1, 5, 1100, 3)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("W,rows", [(32, 256), (32, 7), (8, 1), (8, 7), (16, 256), (24, 600)])
def test_clean_gemm_is_the_tiled_product(method, dtype, shape, W, rows):
    # Covers cuBLASLt's shape rules on any device (M <= 16, K or N not a
    # multiple of 8 are padded), the uint8 offset, groups, float32's exact
    # K-chunks (K > 514 for uint8, > 1023 for int8), and per-tile sign
    # extension when a narrow tile can wrap.
    G, M, K, N = shape
    gen = torch.Generator().manual_seed(G * M * K * N + W)
    a, w = rand_int8((G, M, K), gen, dtype), rand_int8((G, K, N), gen)
    got = torch.ops.pyvs._clean_gemm(a, w, W, rows, method)
    assert got.dtype == torch.int32
    assert torch.equal(got, tiled_product(a, w, W, rows))


def test_clean_gemm_extreme_values():
    # The largest products of each sign, summed over a long tile.
    for dtype, lo, hi in ((torch.uint8, 0, 255), (torch.int8, -128, 127)):
        a = torch.tensor([[lo] * 300 + [hi] * 300, [hi] * 600], dtype=dtype).unsqueeze(0)
        w = torch.tensor([[-128, 127]] * 600, dtype=torch.int8).unsqueeze(0)
        for method in ("float32", "int_mm"):
            for W, rows in ((32, 256), (16, 600), (8, 3)):
                got = torch.ops.pyvs._clean_gemm(a, w, W, rows, method)
                assert torch.equal(got, tiled_product(a, w, W, rows)), (dtype, method, W, rows)


# The layout contract with cuBLASLt: torch._int_mm on CUDA refuses some
# shapes and runs the rest 6-8x slower unless its second operand is
# column-major (measured on an H200). torch._int_mm also runs on the CPU, so
# these tests pin on any machine what the clean GEMM hands to it.

def _record_int_mm(fn):
    """Runs fn() and returns the operands of every aten._int_mm it dispatches."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._int_mm.default:
                calls.append((args[0].shape, args[0].stride(), args[1].shape, args[1].stride()))
            return func(*args, **(kwargs or {}))

    with Record():
        out = fn()
    return out, calls


@pytest.mark.parametrize("M,K,N", [(1, 3, 600), (600, 8, 17), (50, 32, 192), (17, 27, 32), (3, 1280, 1000)])
def test_int_mm_operands_are_padded_and_column_major(M, K, N):
    gen = torch.Generator().manual_seed(M + K + N)
    a, w = rand_int8((M, K), gen), rand_int8((K, N), gen)
    ap, wp = torch.ops.pyvs._int_mm_operands(a, w)
    Mp, Kp = ap.shape
    assert Mp > 16 and Kp % 8 == 0 and wp.shape[0] == Kp and wp.shape[1] % 8 == 0
    assert ap.stride() == (Kp, 1) and wp.stride() == (1, Kp), "w must be column-major"
    assert torch.equal(ap[:M, :K], a) and int(ap.abs().sum()) == int(a.abs().sum())
    assert torch.equal(wp[:K, :N], w) and int(wp.abs().sum()) == int(w.abs().sum())
    assert torch.equal(torch._int_mm(ap, wp)[:M, :N], (a.long() @ w.long()).int())


def test_column_major_weights_reach_int_mm_without_a_copy():
    # A layer's weights [N, K] (PyTorch's layout) are the GEMM's column-major
    # [K, N] operand: with cuBLASLt-friendly sizes nothing is copied.
    gen = torch.Generator().manual_seed(1)
    a, w_nk = rand_int8((32, 64), gen), rand_int8((48, 64), gen)
    _, wp = torch.ops.pyvs._int_mm_operands(a, w_nk.t())
    assert wp.data_ptr() == w_nk.data_ptr() and wp.stride() == (1, 64)


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8], ids=["int8", "uint8"])
@pytest.mark.parametrize("G,M,K,N,W,rows", [(1, 600, 8, 17, 32, 256), (1, 1, 3, 600, 32, 256),
                                            (3, 20, 9, 1, 32, 256), (1, 40, 300, 24, 16, 100)])
def test_clean_gemm_hands_int_mm_column_major_weights(dtype, G, M, K, N, W, rows):
    gen = torch.Generator().manual_seed(G * M * K * N)
    a, w = rand_int8((G, M, K), gen, dtype), rand_int8((G, K, N), gen)
    out, calls = _record_int_mm(lambda: torch.ops.pyvs._clean_gemm(a, w, W, rows, "int_mm"))
    assert torch.equal(out, tiled_product(a, w, W, rows))
    assert calls, "the int_mm method must call torch._int_mm"
    for a_shape, a_stride, w_shape, w_stride in calls:
        assert a_shape[0] > 16 and a_shape[1] % 8 == 0 and w_shape[1] % 8 == 0, (a_shape, w_shape)
        assert a_stride == (a_shape[1], 1), "a must be row-major"
        assert w_stride == (1, w_shape[0]), f"w must be column-major, got strides {w_stride}"


def test_grouped_clean_equals_bmm():
    gen = torch.Generator().manual_seed(4)
    a, w = rand_int8((3, 8, 10), gen), rand_int8((3, 10, 4), gen)
    clean, _ = pyvs.systolic_matmul(a, w, [0.0] * 32)
    assert torch.equal(clean, torch.bmm(a.long(), w.long()).int())


def test_zero_probabilities_give_the_exact_matmul():
    gen = torch.Generator().manual_seed(5)
    a, w = rand_int8((33, 1000), gen, torch.uint8), rand_int8((1000, 29), gen)
    for rows in (1, 256, 5000):
        out, stats = pyvs.systolic_matmul(a, w, [0.0] * 32, rows=rows)
        assert torch.equal(out, (a.long() @ w.long()).int())
        assert int(stats.sum()) == 0


def test_narrow_accumulator_wraps_each_tile():
    # Independent of the kernel: a tile sum that overflows 8 bits wraps and is
    # sign-extended before the int32 add.
    a = torch.full((1, 4), 100, dtype=torch.int8)
    w = torch.full((4, 1), 1, dtype=torch.int8)
    out, _ = pyvs.systolic_matmul(a, w, [0.0] * 8, rows=2)
    tile = ((200 + 128) % 256) - 128  # 200 as a signed 8-bit value: -56
    assert int(out) == 2 * tile


# ---- determinism ------------------------------------------------------------

@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("impl", IMPLS)
def test_same_result_for_any_thread_count_and_row_batching(impl, drop):
    gen = torch.Generator().manual_seed(6)
    a, w = rand_int8((301, 200), gen), rand_int8((200, 37), gen)
    p, protect = p_regime("mixed")
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(pyvs.systolic_matmul(a, w, p, protect=protect, seed=9, row_offset=1000, impl=impl,
                                            drop=drop))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    # Rows split into uneven batches, each with its global row offset.
    parts = [(0, 1), (1, 100), (100, 301)]
    outs, stats = [], torch.zeros(2, 32, dtype=torch.int64)
    for lo, hi in parts:
        o, s = pyvs.systolic_matmul(a[lo:hi], w, p, protect=protect, seed=9, row_offset=1000 + lo,
                                    impl=impl, drop=drop)
        outs.append(o)
        stats += s
    assert torch.equal(torch.cat(outs), results[0][0]) and torch.equal(stats, results[0][1])


def test_events_do_not_depend_on_tiling():
    # The event set is a function of (seed, layer, row, column, k, bit) only:
    # the per-bit counts are the same whatever the array height.
    gen = torch.Generator().manual_seed(7)
    a, w = rand_int8((40, 500), gen), rand_int8((500, 30), gen)
    p, _ = p_regime("mixed")
    counts = [pyvs.systolic_matmul(a, w, p, seed=1, rows=r)[1] for r in (1, 7, 256, 500)]
    assert all(torch.equal(counts[0], c) for c in counts[1:])
    # ...and change with the seed and the layer.
    assert not torch.equal(counts[0], pyvs.systolic_matmul(a, w, p, seed=2)[1])
    assert not torch.equal(counts[0], pyvs.systolic_matmul(a, w, p, seed=1, layer=1)[1])


# ---- statistics -------------------------------------------------------------

def within_binomial(count, n, p, sigmas=5.0):
    mean = n * p
    sd = math.sqrt(n * p * (1 - p))
    return abs(count - mean) <= sigmas * sd, (count, mean, sd)


@pytest.mark.parametrize("impl", ["simple", "fast"])
@pytest.mark.parametrize("bit,p", [(0, 1e-4), (13, 3e-3), (31, 0.2)])
def test_injected_counts_are_binomial(bit, p, impl):
    gen = torch.Generator().manual_seed(bit)
    M, K, N = 128, 300, 64
    a, w = rand_int8((M, K), gen), rand_int8((K, N), gen)
    probs = [0.0] * 32
    probs[bit] = p
    _, stats = pyvs.systolic_matmul(a, w, probs, seed=bit + 100, impl=impl)
    ok, info = within_binomial(int(stats[0, bit]), M * N * K, p)
    assert ok, info
    assert int(stats.sum()) == int(stats[0, bit])


def test_many_bits_at_once_are_each_binomial():
    # Exercises the "lowest erring bit, then the higher ones" decomposition.
    gen = torch.Generator().manual_seed(11)
    M, K, N = 96, 256, 48
    a, w = rand_int8((M, K), gen), rand_int8((K, N), gen)
    probs = [0.02 if b % 2 else 0.1 / (1 + b) for b in range(32)]
    _, stats = pyvs.systolic_matmul(a, w, probs, seed=3)
    for b in range(32):
        ok, info = within_binomial(int(stats[0, b]), M * N * K, probs[b])
        assert ok, (b, info)


@pytest.mark.parametrize("impl", ["simple", "fast"])
def test_protect_mask_splits_the_same_events(impl):
    gen = torch.Generator().manual_seed(12)
    a, w = rand_int8((50, 400), gen), rand_int8((400, 20), gen)
    probs = [1e-3] * 32
    mask = 0xF00000F1
    _, plain = pyvs.systolic_matmul(a, w, probs, seed=4, impl=impl)
    out, split = pyvs.systolic_matmul(a, w, probs, seed=4, protect=mask, impl=impl)
    for b in range(32):
        protected = (mask >> b) & 1
        assert int(split[0, b]) == (0 if protected else int(plain[0, b]))
        assert int(split[1, b]) == (int(plain[0, b]) if protected else 0)
    # Everything protected: every error is corrected and out is exact.
    out, stats = pyvs.systolic_matmul(a, w, probs, seed=4, protect=2**32 - 1, impl=impl)
    assert torch.equal(out, (a.long() @ w.long()).int())
    assert int(stats[0].sum()) == 0 and torch.equal(stats[1], plain[0])


@pytest.mark.parametrize("impl", ["simple", "fast"])
def test_a_flip_moves_the_output_by_the_bit_weight(impl):
    # One event is certain (p = 1 on bit 4) at every MAC of a single-MAC
    # product: 0 + 3*2 = 6 = 0b00110; bit 4 flips to 0b10110 = 22.
    a = torch.tensor([[3]], dtype=torch.int8)
    w = torch.tensor([[2]], dtype=torch.int8)
    probs = [0.0] * 8
    probs[4] = 1.0
    out, stats = pyvs.systolic_matmul(a, w, probs, impl=impl)
    assert int(out) == 22 and int(stats[0, 4]) == 1
    # bit 7 of an 8-bit accumulator is the sign: 6 -> 6 - 128
    probs = [0.0] * 8
    probs[7] = 1.0
    assert int(pyvs.systolic_matmul(a, w, probs, impl=impl)[0]) == 6 - 128
    # Two MACs, bit 4 certain at both: 6 -> 22, + 6 = 28 = 0b11100 -> 12.
    a2, w2 = torch.tensor([[3, 3]], dtype=torch.int8), torch.tensor([[2], [2]], dtype=torch.int8)
    probs = [0.0] * 8
    probs[4] = 1.0
    assert int(pyvs.systolic_matmul(a2, w2, probs, impl=impl)[0]) == 12


@pytest.mark.parametrize("impl", ["simple", "fast"])
def test_a_dropped_mac_leaves_the_partial_sum_as_it_was(impl):
    # p = 1 on protected bit 4: every MAC errs and is dropped, so nothing is
    # ever added; the unprotected bit-2 errors of those MACs land nowhere.
    a2, w2 = torch.tensor([[3, 5]], dtype=torch.int8), torch.tensor([[2], [7]], dtype=torch.int8)
    probs = [0.0] * 8
    probs[4], probs[2] = 1.0, 1.0
    out, stats = pyvs.systolic_matmul(a2, w2, probs, protect=1 << 4, drop=True, impl=impl)
    assert int(out) == 0 and int(stats[1, 4]) == 2 and int(stats[0].sum()) == 0
    # Replay instead of drop: bit 4 comes out right, bit 2 flips at each MAC:
    # (6 ^ 4) = 2, then 2 + 35 = 37 = 0b100101 ^ 4 = 33.
    out, stats = pyvs.systolic_matmul(a2, w2, probs, protect=1 << 4, impl=impl)
    assert int(out) == 33 and int(stats[1, 4]) == 2 and int(stats[0, 2]) == 2


@pytest.mark.parametrize("impl", ["simple", "fast"])
def test_dropped_macs_are_binomial_and_each_removes_its_product(impl):
    # All operands 1: each dropped MAC lowers its output by exactly 1, so
    # K - out counts an output's dropped MACs, which the stats must say; their
    # number is Binomial(M N K, q) for q on protected bit 31; unprotected
    # bit-5 errors land only at MACs not dropped: Binomial(M N K, p5 (1 - q)).
    M, K, N, q, p5 = 64, 300, 48, 2e-3, 1e-3
    a, w = torch.ones(M, K, dtype=torch.uint8), torch.ones(K, N, dtype=torch.int8)
    probs = [0.0] * 32
    probs[31], probs[5] = q, p5
    _, stats = pyvs.systolic_matmul(a, w, probs, protect=1 << 31, seed=8, drop=True, impl=impl)
    ok, info = within_binomial(int(stats[1, 31]), M * N * K, q)
    assert ok, info
    ok, info = within_binomial(int(stats[0, 5]), M * N * K, p5 * (1 - q))
    assert ok, info
    # Without the bit-5 errors the identity is exact.
    probs[5] = 0.0
    out, stats = pyvs.systolic_matmul(a, w, probs, protect=1 << 31, seed=8, drop=True, impl=impl)
    assert int((K - out.long()).sum()) == int(stats[1, 31]) > 0 and int(stats[0].sum()) == 0


@pytest.mark.parametrize("impl", ["simple", "fast"])
def test_drop_sees_the_same_events_as_replay(impl):
    # Same (seed, layer, row, column, k, bit) events: the detected counts agree
    # and dropping only removes the flips that shared a MAC with a detection.
    gen = torch.Generator().manual_seed(13)
    a, w = rand_int8((40, 300), gen), rand_int8((300, 20), gen)
    probs = [2e-3] * 32
    mask = 0xC0000000
    _, replay = pyvs.systolic_matmul(a, w, probs, seed=5, protect=mask, impl=impl)
    _, drop = pyvs.systolic_matmul(a, w, probs, seed=5, protect=mask, drop=True, impl=impl)
    assert torch.equal(replay[1], drop[1])
    assert bool((drop[0] <= replay[0]).all()) and int(drop[0].sum()) < int(replay[0].sum())
    # With nothing protected there is nothing to drop.
    assert torch.equal(pyvs.systolic_matmul(a, w, probs, seed=5, drop=True, impl=impl)[0],
                       pyvs.systolic_matmul(a, w, probs, seed=5, impl=impl)[0])


# ---- tracing ----------------------------------------------------------------

def _sample(device):
    gen = torch.Generator().manual_seed(0)
    a, w = rand_int8((5, 9), gen).to(device), rand_int8((9, 4), gen).to(device)
    p = torch.tensor([1e-2] * 16, dtype=torch.float64, device=device)
    return a, w, p


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_opcheck(device):
    a, w, p = _sample(device)
    torch.library.opcheck(torch.ops.pyvs.systolic_matmul.default, (a, w, p, 3, 1, 2, 0, 4))
    torch.library.opcheck(torch.ops.pyvs.systolic_matmul.default,
                          (a.view(1, 5, 9), w.view(1, 9, 4), p))
    torch.library.opcheck(torch.ops.pyvs.systolic_matmul.default, (a, w, p, 3, 1, 2, 0, 4, "auto", True))
    pats, joint, _ = conditioned_regime("heavy", 16)
    torch.library.opcheck(torch.ops.pyvs.systolic_matmul.default,
                          (a, w, torch.zeros_like(p), 3, 1, 2, 0, 4, "auto", False, pats.to(device), joint.to(device)))


def test_traces_under_torch_compile():
    a, w, p = _sample("cpu")

    def f(a, w, p):
        out, stats = torch.ops.pyvs.systolic_matmul(a, w, p, 0, 1)
        return out * 2, stats

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    got, expected = compiled(a, w, p), f(a, w, p)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


# ---- CUDA -------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("regime", ["zero", "tiny", "large", "mixed"])
@pytest.mark.parametrize("shape", SHAPES + [(1000, 1152, 300)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8], ids=["int8", "uint8"])
def test_cuda_matches_cpu(shape, regime, dtype):
    M, K, N = shape
    gen = torch.Generator().manual_seed(M * 7 + K)
    a, w = rand_int8((M, K), gen, dtype), rand_int8((K, N), gen)
    p, protect = p_regime(regime)
    # K-tiles of 7 and 256 rows, TE-Drop, and one tile of all K (output-stationary) with TE-Drop
    for rows, drop in ((7, False), (256, False), (256, True), (max(K, 1), True)):
        args = dict(protect=protect, seed=77, layer=3, row_offset=9, rows=rows, drop=drop)
        cpu = pyvs.systolic_matmul(a, w, p, impl="simple", **args)  # once for every GPU path
        for impl, p_dev in [(impl, dev) for impl in IMPLS for dev in ("cpu", "cuda")]:
            gpu = pyvs.systolic_matmul(a.cuda(), w.cuda(), torch.tensor(p, dtype=torch.float64, device=p_dev),
                                       impl=impl, **args)
            assert gpu[0].is_cuda
            assert torch.equal(cpu[0], gpu[0].cpu()) and torch.equal(cpu[1], gpu[1].cpu()), (impl, rows, p_dev)


@needs_cuda
@pytest.mark.parametrize("regime", ["rare", "heavy", "certain"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cuda_conditioned_injection_matches_cpu(shape, regime):
    M, K, N = shape
    gen = torch.Generator().manual_seed(M * 5 + K)
    a, w = rand_int8((M, K), gen, torch.uint8), rand_int8((K, N), gen)
    pats, joint, protect = conditioned_regime(regime)
    for rows, drop in ((7, False), (256, True)):
        args = dict(protect=protect, seed=78, layer=6, row_offset=9, rows=rows, drop=drop)
        cpu = pyvs.systolic_matmul(a, w, None, impl="simple", patterns=pats, joint=joint, **args)
        for impl, dev in [(impl, dev) for impl in IMPLS for dev in ("cpu", "cuda")]:
            gpu = pyvs.systolic_matmul(a.cuda(), w.cuda(), None, impl=impl, patterns=pats.to(dev),
                                       joint=joint.to(dev), **args)
            assert torch.equal(cpu[0], gpu[0].cpu()) and torch.equal(cpu[1], gpu[1].cpu()), (impl, rows, dev)


@needs_cuda
@pytest.mark.parametrize("impl", IMPLS)
def test_cuda_depthwise_output_is_groups_innermost_like_the_fake_kernel(impl):
    # Tap-major activations (a depthwise conv's channels-last taps) give a
    # groups-innermost output on CUDA, whatever the path, as the fake kernel says.
    gen = torch.Generator().manual_seed(6)
    a = layouts(rand_int8((96, 50, 9), gen, torch.uint8))["tap-major"].cuda()
    w = rand_int8((96, 9, 1), gen).cuda()
    p, protect = p_regime("mixed")
    out, _ = pyvs.systolic_matmul(a, w, p, protect=protect, seed=2, impl=impl)
    assert out.stride() == (1, 96, 1) and pyvs.ops.groups_innermost(a, 1)
    row_major, _ = pyvs.systolic_matmul(a.contiguous(), w, p, protect=protect, seed=2, impl=impl)
    assert row_major.is_contiguous() and torch.equal(out, row_major)
    torch.library.opcheck(torch.ops.pyvs.systolic_matmul.default,
                          (a, w, torch.tensor(p, dtype=torch.float64), protect, 2, 0, 0, 256, impl))


@needs_cuda
def test_cuda_tables_are_cached_without_changing_a_result():
    # The op keeps each (p, K)'s tables on the GPU; a new p must never be
    # served another p's tables, however close.
    gen = torch.Generator().manual_seed(3)
    a, w = rand_int8((64, 300), gen, torch.uint8), rand_int8((300, 40), gen)
    base = [1e-3] * 32
    for p in (base, base[:-1] + [1e-3 * (1 + 2**-50)], [0.0] * 32, base, [2e-3] * 32):
        cpu = pyvs.systolic_matmul(a, w, p, seed=9, impl="simple")
        for impl in IMPLS:
            gpu = pyvs.systolic_matmul(a.cuda(), w.cuda(), p, seed=9, impl=impl)
            assert torch.equal(cpu[0], gpu[0].cpu()) and torch.equal(cpu[1], gpu[1].cpu()), impl


@needs_cuda
def test_cuda_int_mm_operands_of_a_group_slice_are_aligned():
    # One group of a [G, K, N] operand starts g * K * N bytes in; cuBLASLt
    # assumes 256-byte aligned operands.
    gen = torch.Generator().manual_seed(4)
    a, w = rand_int8((3, 40, 72), gen).cuda(), rand_int8((3, 72, 24), gen).cuda()
    w = w.transpose(1, 2).contiguous().transpose(1, 2)  # column-major, as the layers hand it over
    for g in range(3):
        ap, wp = torch.ops.pyvs._int_mm_operands(a[g], w[g])
        assert ap.data_ptr() % 256 == 0 and wp.data_ptr() % 256 == 0
        assert wp.stride() == (1, wp.shape[0])  # still column-major
        assert torch.equal(torch._int_mm(ap, wp).cpu(), (a[g].cpu().long() @ w[g].cpu().long()).int())


@needs_cuda
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(32, 50, 9, 1), (4, 33, 72, 16)], ids=lambda s: "x".join(map(str, s)))
def test_cuda_groups_match_cpu(impl, shape):
    G, M, K, N = shape
    gen = torch.Generator().manual_seed(8)
    a, w = rand_int8((G, M, K), gen, torch.uint8), rand_int8((G, K, N), gen)
    p, protect = p_regime("mixed")
    cpu = pyvs.systolic_matmul(a, w, p, protect=protect, seed=1, impl="simple")
    gpu = pyvs.systolic_matmul(a.cuda(), w.cuda(), p, protect=protect, seed=1, impl=impl)
    assert torch.equal(cpu[0], gpu[0].cpu()) and torch.equal(cpu[1], gpu[1].cpu())


@needs_cuda
@pytest.mark.parametrize("layout", ["row-major", "tap-major", "k-major"])
@pytest.mark.parametrize("G,M,K,N", [(96, 50, 9, 1), (4, 33, 72, 16)])
def test_cuda_strided_activations_match_cpu(layout, G, M, K, N):
    gen = torch.Generator().manual_seed(G + K)
    a = layouts(rand_int8((G, M, K), gen, torch.uint8))[layout]
    w = rand_int8((G, K, N), gen)
    p, protect = p_regime("mixed")
    cpu = pyvs.systolic_matmul(a, w, p, protect=protect, seed=2, impl="simple")
    for impl in IMPLS:
        gpu = pyvs.systolic_matmul(a.cuda(), w.cuda(), p, protect=protect, seed=2, impl=impl)
        assert torch.equal(cpu[0], gpu[0].cpu()) and torch.equal(cpu[1], gpu[1].cpu()), impl


@needs_cuda
@pytest.mark.parametrize("W", [8, 13, 32])
def test_cuda_narrow_accumulators_match_cpu(W):
    gen = torch.Generator().manual_seed(W)
    a, w = rand_int8((40, 300), gen, torch.uint8), rand_int8((300, 24), gen)
    p = [0.01 * (b % 3) for b in range(W)]
    args = dict(protect=0b101, seed=-3, layer=1, rows=100)
    cpu = pyvs.systolic_matmul(a, w, p, impl="simple", **args)
    for impl in IMPLS:
        gpu = pyvs.systolic_matmul(a.cuda(), w.cuda(), p, impl=impl, **args)
        assert torch.equal(cpu[0], gpu[0].cpu()) and torch.equal(cpu[1], gpu[1].cpu()), impl


def cnn_gemm_shapes():
    """Every distinct (G, M, K, N) of MobileNetV2, MobileNetV3-Large and
    ResNet-50 on two 64x64 images: the K and N of all their layers (what
    cuBLASLt accepts or refuses), at a small M."""
    import torchvision
    from pyvs.models import gemm_shapes
    shapes = set()
    for arch in ("mobilenet_v2", "mobilenet_v3_large", "resnet50"):
        net = torchvision.models.get_model(arch, weights=None)
        shapes |= {s for _, s in gemm_shapes(net, torch.zeros(2, 3, 64, 64))}
    return sorted(shapes)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8], ids=["int8", "uint8"])
@pytest.mark.parametrize("regime", ["zero", "mixed"])
def test_cuda_matches_cpu_on_every_cnn_gemm_shape(dtype, regime):
    p, protect = p_regime(regime)
    gen = torch.Generator().manual_seed(31)
    for G, M, K, N in cnn_gemm_shapes():
        a, w = rand_int8((G, M, K), gen, dtype), rand_int8((G, K, N), gen)
        args = dict(protect=protect, seed=5, layer=G + K + N, row_offset=3)
        cpu = pyvs.systolic_matmul(a, w, p, **args)
        for impl in IMPLS:
            gpu = pyvs.systolic_matmul(a.cuda(), w.cuda(), p, impl=impl, **args)
            assert torch.equal(cpu[0], gpu[0].cpu()) and torch.equal(cpu[1], gpu[1].cpu()), \
                (G, M, K, N, impl)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8], ids=["int8", "uint8"])
def test_cuda_clean_gemm_is_the_tiled_product(dtype):
    gen = torch.Generator().manual_seed(21)
    for G, M, K, N in [(1, 1, 1, 1), (1, 16, 7, 9), (1, 17, 8, 8), (3, 5, 300, 13), (2, 300, 600, 24)]:
        a, w = rand_int8((G, M, K), gen, dtype), rand_int8((G, K, N), gen)
        for W, rows in [(32, 256), (8, 7), (16, 256)]:
            got = torch.ops.pyvs._clean_gemm(a.cuda(), w.cuda(), W, rows, "int_mm")
            assert got.is_cuda and torch.equal(got.cpu(), tiled_product(a, w, W, rows))


# ---- bad input --------------------------------------------------------------

GOOD_P = [0.0] * 32


def _ab():
    return torch.zeros(4, 6, dtype=torch.int8), torch.zeros(6, 3, dtype=torch.int8)


@pytest.mark.parametrize("call,match", [
    (lambda a, w: pyvs.systolic_matmul(a.float(), w, GOOD_P), "a must be int8 or uint8"),
    (lambda a, w: pyvs.systolic_matmul(a, w.to(torch.uint8), GOOD_P), "w must be int8"),
    (lambda a, w: pyvs.systolic_matmul(a.view(-1), w, GOOD_P), r"a must be \[M, K\]"),
    (lambda a, w: pyvs.systolic_matmul(a, w.view(1, 6, 3), GOOD_P), "w must have the rank of a"),
    (lambda a, w: pyvs.systolic_matmul(a, w[:5], GOOD_P), "K mismatch"),
    (lambda a, w: pyvs.systolic_matmul(a.view(2, 2, 6), w.view(1, 6, 3).expand(3, 6, 3), GOOD_P),
     "group count mismatch"),
    (lambda a, w: pyvs.systolic_matmul(a, w, [0.0] * 7), "between 8 and 32 bits"),
    (lambda a, w: pyvs.systolic_matmul(a, w, [0.0] * 33), "between 8 and 32 bits"),
    (lambda a, w: pyvs.systolic_matmul(a, w, torch.zeros(32)), "p_bits must be float64"),
    (lambda a, w: pyvs.systolic_matmul(a, w, torch.zeros(2, 16, dtype=torch.float64)),
     r"p_bits must be 1-D"),
    (lambda a, w: pyvs.systolic_matmul(a, w, [float("nan")] + GOOD_P[1:]),
     r"p_bits\[0\] = nan is not a probability"),
    (lambda a, w: pyvs.systolic_matmul(a, w, GOOD_P[:-1] + [1.5]),
     r"p_bits\[31\] = 1.5 is not a probability"),
    (lambda a, w: pyvs.systolic_matmul(a, w, [-1e-9] + GOOD_P[1:]), "is not a probability"),
    (lambda a, w: pyvs.systolic_matmul(a, w, [0.0] * 16, protect=1 << 16),
     "has bits outside the 16-bit accumulator"),
    (lambda a, w: pyvs.systolic_matmul(a, w, GOOD_P, protect=-1), "has bits outside"),
    (lambda a, w: pyvs.systolic_matmul(a, w, GOOD_P, rows=0), r"rows \(systolic array height\)"),
    (lambda a, w: pyvs.systolic_matmul(a, w, GOOD_P, layer=2**32), "layer"),
    (lambda a, w: pyvs.systolic_matmul(a, w, GOOD_P, row_offset=-1), "row_offset"),
    (lambda a, w: pyvs.systolic_matmul(a, w, GOOD_P, row_offset=2**32 - 3), "row_offset"),
    (lambda a, w: pyvs.systolic_matmul(a, w, GOOD_P, row_offset=2**63 - 2), "row_offset"),  # would overflow
    (lambda a, w: torch.ops.pyvs._fault_tables(torch.tensor([float("nan")] * 8, dtype=torch.float64), 3),
     r"_fault_tables: p_bits\[0\] = nan is not a probability"),
    (lambda a, w: torch.ops.pyvs._fault_tables(torch.tensor([2.0] * 8, dtype=torch.float64), 3),
     "is not a probability"),
    (lambda a, w: torch.ops.pyvs.systolic_matmul(a, w, torch.zeros(32, dtype=torch.float64, device="meta")),
     "p_bits must be on the CPU or on a's device"),
    (lambda a, w: pyvs.systolic_matmul(a, w, GOOD_P, impl="fastest"),
     "impl must be 'auto', 'fast' or 'simple', got 'fastest'"),
])
def test_bad_input_is_a_clear_error(call, match):
    a, w = _ab()
    with pytest.raises((ValueError, TypeError), match=match):
        call(a, w)


def test_bad_seed_is_a_clear_error():
    a, w = _ab()
    with pytest.raises(ValueError, match="seed must fit in 64 bits"):
        pyvs.systolic_matmul(a, w, GOOD_P, seed=2**64)


@needs_cuda
def test_tensors_on_different_devices_are_a_clear_error():
    a, w = _ab()
    with pytest.raises(ValueError, match="must be on the same device"):
        pyvs.systolic_matmul(a.cuda(), w, GOOD_P)


def test_meta_tensors_on_different_devices_are_a_clear_error():
    # Runs without a GPU: the meta device stands in for "another device".
    a, w = _ab()
    with pytest.raises(ValueError, match="must be on the same device"):
        torch.ops.pyvs.systolic_matmul(a, w.to("meta"), torch.zeros(32, dtype=torch.float64))


# ---- the CPU's int8 GEMM on CPUs without VNNI --------------------------------

_ISA_SCRIPT = """
import torch, pyvs, sys
sys.path.insert(0, {tests!r})
from test_ops import tiled_product
from opdata import rand_int8
gen = torch.Generator().manual_seed(5)
a, w = torch.full((32, 64), 127, dtype=torch.int8), torch.full((64, 32), -128, dtype=torch.int8)
raw_exact = torch.equal(torch._int_mm(a, w.t().contiguous().t()), (a.long() @ w.long()).int())
ok = []
for dtype in (torch.int8, torch.uint8):
    a, w = rand_int8((1, 200, 320), gen, dtype), rand_int8((1, 320, 48), gen)
    ok.append(torch.equal(torch.ops.pyvs._clean_gemm(a, w, 32, 256, "int_mm"), tiled_product(a, w, 32, 256)))
    out, _ = pyvs.systolic_matmul(a[0], w[0], [0.0] * 32, impl="fast")
    ok.append(torch.equal(out, (a[0].long() @ w[0].long()).int()))
print(raw_exact, all(ok))
"""


@pytest.mark.parametrize("isa", ["AVX2", "AVX512_CORE"])
def test_the_clean_gemm_is_exact_on_cpus_without_vnni(isa):
    # oneDNN's int8 GEMM saturates without VNNI; ONEDNN_MAX_CPU_ISA makes
    # this CPU behave like one that lacks it.
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=isa)
    out = subprocess.run([sys.executable, "-c", _ISA_SCRIPT.format(tests=here)], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    raw_exact, pyvs_exact = out[-2] == "True", out[-1] == "True"
    if raw_exact:
        pytest.skip(f"torch._int_mm is exact with ONEDNN_MAX_CPU_ISA={isa} on this machine: nothing to fall back from")
    assert pyvs_exact, "pyvs's clean GEMM must not inherit torch._int_mm's saturation"
