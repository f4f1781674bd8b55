"""Cycle counts of the weight-stationary array and the latency of replays."""
import math

import pytest
import torch

from pyvs.hardware import ArrayConfig
from pyvs.latency import gemm_cycles, latency_overhead, model_cycles, stalls


def cycles_by_hand(M, K, N, G, R, C, load=True):
    """Tile by tile, as the array runs: every (group block, K block, N block)
    tile loads R weight rows, streams M rows and drains R + C - 2 cycles."""
    per_tile = (R if load else 0) + M + R + C - 2
    if K <= R and N <= C:
        pack = max(1, min(R // K, C // N))
    else:
        pack = 1
    total, g = 0, 0
    while g < G:
        g += pack
        for _k0 in range(0, K, R):
            for _n0 in range(0, N, C):
                total += per_tile
    return total


@pytest.mark.parametrize("M,K,N,G,R,C", [
    (10, 6, 5, 1, 4, 4),        # 2 x 2 tiles of 4 + 10 + 6 = 20 cycles: 80
    (1, 1, 1, 1, 1, 1),
    (12544, 27, 32, 1, 256, 256),
    (3136, 9, 1, 144, 256, 256),  # depthwise: 28 groups per tile
    (49, 1280, 1000, 1, 256, 256),
    (7, 300, 3, 5, 16, 8),
])
def test_gemm_cycles_by_hand(M, K, N, G, R, C):
    a = ArrayConfig(rows=R, cols=C)
    assert gemm_cycles(M, K, N, G, a) == cycles_by_hand(M, K, N, G, R, C)
    b = ArrayConfig(rows=R, cols=C, overlap_weight_load=True)
    assert gemm_cycles(M, K, N, G, b) == cycles_by_hand(M, K, N, G, R, C, load=False)


def test_first_case_is_eighty_cycles():
    assert gemm_cycles(10, 6, 5, 1, ArrayConfig(rows=4, cols=4)) == 80


def test_batch_shares_weight_loads():
    shapes = {"a": (1, 10, 6, 5)}
    one = model_cycles(shapes, ArrayConfig(rows=4, cols=4))["a"]
    four = model_cycles(shapes, ArrayConfig(rows=4, cols=4, batch=4))["a"]
    assert one == 80 and four == 4 * (4 + 40 + 6) / 4  # 4 tiles of (load + 4*10 rows + drain), per image


def test_latency_overhead():
    base = model_cycles({"a": (1, 10, 6, 5), "b": (2, 4, 3, 3)}, ArrayConfig(rows=4, cols=4))
    per_layer, total = latency_overhead(base, {}, ArrayConfig(rows=4, cols=4))
    assert total == 0 and all(v == 0 for v in per_layer.values())
    two = ArrayConfig(rows=4, cols=4, replay_cycles=2)
    per_layer, total = latency_overhead(base, {"a": 8.0}, two, coalesce=False)
    assert per_layer["a"] == 16 / base["a"] and per_layer["b"] == 0
    assert total == 16 / (base["a"] + base["b"])
    # Coalesced: 8 errors over a's 80 cycles fill 80 (1 - e^-0.1) = 7.61 cycles on average.
    per_layer, total = latency_overhead(base, {"a": 8.0}, two)
    assert per_layer["a"] == pytest.approx(2 * 80 * (1 - math.exp(-0.1)) / 80, rel=1e-12)
    assert total == pytest.approx(2 * 80 * (1 - math.exp(-0.1)) / (base["a"] + base["b"]), rel=1e-12)
    with pytest.raises(ValueError, match="layers the workload does not have"):
        latency_overhead(base, {"c": 1.0})


@pytest.mark.parametrize("errors", [10, 300, 1000, 5000])
def test_stalls_count_the_cycles_errors_fall_in(errors):
    """Errors thrown independently and uniformly into a layer's cycles: the
    cycles that hold at least one (one stall each) average
    C (1 - (1 - 1/C)^E), which the Poisson form approximates within a
    relative 1/(2C) (the exponents differ by E / (2 C^2))."""
    C, trials = 1000, 400
    gen = torch.Generator().manual_seed(7)
    hit = torch.zeros(trials)
    for t in range(trials):
        hit[t] = torch.unique(torch.randint(0, C, (errors,), generator=gen)).numel()
    exact = C * (1 - (1 - 1 / C) ** errors)
    sd = float(hit.std()) / math.sqrt(trials)
    assert abs(float(hit.mean()) - exact) < 5 * sd + 1e-9
    assert stalls(C, errors) == pytest.approx(exact, rel=1 / C)
    assert stalls(C, errors, coalesce=False) == errors and stalls(C, errors) <= errors


def os_cycles_by_simulation(M, K, N, G, R, C, drain=True):
    """Output-stationary, counted tile by tile: every group's outputs cut into
    R x C blocks; a block streams K products, skews in and out (R + C - 2),
    and shifts its R rows of outputs out."""
    total = 0
    for _ in range(G):
        for m0 in range(0, M, R):
            for n0 in range(0, N, C):
                total += K + (R - 1) + (C - 1) + (R if drain else 0)
    return total


@pytest.mark.parametrize("M,K,N,G,R,C", [(10, 6, 5, 1, 4, 4), (12544, 27, 32, 1, 256, 256),
                                         (3136, 9, 1, 144, 256, 256), (49, 1280, 1000, 1, 256, 256),
                                         (7, 300, 3, 5, 16, 8)])
def test_output_stationary_cycles_by_hand(M, K, N, G, R, C):
    a = ArrayConfig(rows=R, cols=C, dataflow="os")
    assert gemm_cycles(M, K, N, G, a) == os_cycles_by_simulation(M, K, N, G, R, C)
    b = ArrayConfig(rows=R, cols=C, dataflow="os", overlap_weight_load=True)
    assert gemm_cycles(M, K, N, G, b) == os_cycles_by_simulation(M, K, N, G, R, C, drain=False)


def test_data_movement_by_hand():
    from pyvs.energy import gemm_bit_hops
    ws, os_ = ArrayConfig(rows=4, cols=4), ArrayConfig(rows=4, cols=4, dataflow="os")
    # [10, 6] x [6, 5]: 300 MACs. WS: 8 + 32 bits each, and 30 weights of 8
    # bits shifted past (4 + 1) / 2 rows; OS: 8 + 8 bits each, and 50 outputs
    # of 32 bits shifted past (4 + 1) / 2 rows.
    assert gemm_bit_hops(10, 6, 5, 1, ws, 32) == 300 * 40 + 30 * 8 * 2.5
    assert gemm_bit_hops(10, 6, 5, 1, os_, 32) == 300 * 16 + 50 * 32 * 2.5
