"""The op's definition, step by step, in plain PyTorch.

This is the obviously-correct version that the C++ and CUDA kernels are
tested against, bit for bit. It follows ``csrc/fault_model.h`` literally: the same
Philox4x32-10 counters, the same host tables (computed here independently,
with Python floats), the same draw order. It is slow: a Python loop over k,
vectorized over the outputs.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

from .hardware import ROWS

__all__ = ["philox4x32_10", "screen_word", "uniform62", "fault_tables", "conditioned_tables", "signature",
           "systolic_matmul"]

_M32 = 0xFFFFFFFF
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
UNIFORM_BITS = 62
ONE = 1 << UNIFORM_BITS  # threshold of probability 1


def _mulhilo32(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves of a * m for a in [0, 2^32) held in int64.

    The 64-bit product does not fit a signed int64, so m is split in 16-bit
    halves and every partial product stays below 2^49."""
    x = a * (m & 0xFFFF)
    y = a * (m >> 16)
    low = ((y & 0xFFFF) << 16) + x
    return ((y >> 16) + (low >> 32)) & _M32, low & _M32


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int):
    """Philox4x32-10 (Salmon et al., SC'11) on int64 tensors of uint32 values.

    Counter words c0..c3 (tensors or ints, broadcast together), key words
    k0, k1 (ints). Returns the four output words as int64 tensors."""
    c = [torch.as_tensor(x, dtype=torch.int64) for x in (c0, c1, c2, c3)]
    c = list(torch.broadcast_tensors(*c))
    for _ in range(10):
        hi0, lo0 = _mulhilo32(c[0], _PHILOX_M[0])
        hi1, lo1 = _mulhilo32(c[2], _PHILOX_M[1])
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
        k0 = (k0 + _PHILOX_W[0]) & _M32
        k1 = (k1 + _PHILOX_W[1]) & _M32
    return c


SCREEN_COUNTER = 1 << 31
SCREEN_SHIFT = UNIFORM_BITS - 32


def screen_word(seed: int, layer: int, row, col) -> torch.Tensor:
    """The 32-bit screening word v of output (row, col), int64: word
    (row mod 4) of the Philox block with counter (2^31, col, row // 4, layer).
    The output's first uniform is v * 2^30 + (its draw 0 mod 2^30)."""
    seed &= (1 << 64) - 1
    row = torch.as_tensor(row, dtype=torch.int64)
    x = philox4x32_10(SCREEN_COUNTER, col, row >> 2, layer, seed & _M32, seed >> 32)
    j = row & 3
    return torch.where(j == 0, x[0], torch.where(j == 1, x[1], torch.where(j == 2, x[2], x[3])))


def uniform62(seed: int, layer: int, row, col, draw) -> torch.Tensor:
    """Draw ``draw`` of the output stream (seed, layer, row, col): a uniform
    integer in [0, 2^62) as int64. Counter = (draw // 2, col, row, layer);
    even draws take words (x1, x0), odd draws (x3, x2)."""
    seed &= (1 << 64) - 1
    draw = torch.as_tensor(draw, dtype=torch.int64)
    x = philox4x32_10(draw >> 1, col, row, layer, seed & _M32, seed >> 32)
    # ((hi << 32) | lo) >> 2, without leaving int64.
    even = (x[1] << 30) | (x[0] >> 2)
    odd = (x[3] << 30) | (x[2] >> 2)
    return torch.where((draw & 1) == 1, odd, even)


def _thresh(x: float) -> int:
    """floor(x * 2^62): the product is exact, int() truncates."""
    return int(x * float(ONE))


def fault_tables(p_bits: Sequence[float], K: int):
    """Host tables of ``csrc/fault_model.h`` from per-bit probabilities p_bits [W]
    and K MACs per output, with Python floats (IEEE 754 doubles; +, -, *, /
    only, in the same order as ``make_fault_tables`` in ``csrc/systolic_matmul.cpp``).

    Returns (gap [K+1], first [W], next [W, W]) as int64 tensors and ``any``
    (False when every probability is 0)."""
    p = [float(x) for x in p_bits]
    W = len(p)
    c, cum = 0.0, []
    for pb in p:
        c = c + (1.0 - c) * pb  # P(some bit <= b errs at a MAC)
        cum.append(c)
    nxt = [[0] * W for _ in range(W)]
    for j in range(W - 1):
        cj = 0.0
        for b in range(j + 1, W):
            cj = cj + (1.0 - cj) * p[b]  # P(some bit in (j, b] errs)
            nxt[j][b] = _thresh(cj)
    q = c
    gap, first = [0] * (K + 1), [0] * W
    if q > 0.0:
        first = [_thresh(cb / q) for cb in cum]
        d = 0.0
        for g in range(1, K + 1):
            d = d + (1.0 - d) * q  # P(gap < g) = 1 - (1 - q)^g
            gap[g] = _thresh(d)
    as_t = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    return as_t(gap), as_t(first), as_t(nxt), q > 0.0


def conditioned_tables(patterns: Sequence[int], joint, K: int):
    """Host tables of conditioned injection (``csrc/fault_model.h``) from
    patterns [P] and joint [W + 1, P] (P(pattern j | signature L)), with
    Python floats in ``make_fault_tables``' order: (gap [K+1], accept [W+1],
    cum [W+1, P], patterns [P]) as int64 tensors and ``any``."""
    rows = [[float(x) for x in row] for row in (joint.tolist() if isinstance(joint, torch.Tensor) else joint)]
    P = len(rows[0])
    some = []
    for row in rows:
        total = 0.0
        for x in row:
            total = total + x
        some.append(total)
    q = max(some)
    gap, accept, cum = [0] * (K + 1), [0] * len(rows), [[0] * P for _ in rows]
    if q > 0.0:
        for L, row in enumerate(rows):
            accept[L] = _thresh(some[L] / q)
            run = 0.0
            for j in range(P if some[L] > 0.0 else 0):
                run = run + row[j]
                cum[L][j] = _thresh(run / some[L])
        d = 0.0
        for g in range(1, K + 1):
            d = d + (1.0 - d) * q
            gap[g] = _thresh(d)
    as_t = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
    pats = [int(m) for m in (patterns.tolist() if isinstance(patterns, torch.Tensor) else patterns)]
    return as_t(gap), as_t(accept), as_t(cum), as_t(pats), q > 0.0


def signature(x: torch.Tensor, product: torch.Tensor, W: int) -> torch.Tensor:
    """L of every MAC: the top bits (from W - 1 down) in which the W-bit
    partial sum x and the product differ, int64 (as ``signature_of``)."""
    diff = (x ^ product) & ((1 << W) - 1)
    run = torch.zeros_like(diff)
    alive = torch.ones_like(diff, dtype=torch.bool)
    for b in range(W - 1, -1, -1):
        alive &= ((diff >> b) & 1) == 1
        run += alive
    return run


def _conditioned_bits(streams: "_Streams", hit: torch.Tensor, x: torch.Tensor, product: torch.Tensor,
                      accept: torch.Tensor, cum: torch.Tensor, pats: torch.Tensor, W: int) -> torch.Tensor:
    """The erring bits of the candidate MACs (hit), 0 where rejected: one
    draw accepts per signature, a second picks the pattern."""
    L = signature(x, product, W)
    ok = streams.uniform(hit) < accept[L]
    bits = torch.zeros_like(L)
    if bool(ok.any()):
        sel = torch.zeros_like(hit)
        idx = hit.nonzero(as_tuple=True)
        sel[tuple(ix[ok] for ix in idx)] = True
        v = streams.uniform(sel)
        j = (cum[L[ok]] <= v[:, None]).sum(1).clamp(max=len(pats) - 1)  # smallest j with v < cum[L][j]
        bits[ok] = pats[j]
    return bits


class _Streams:
    """The random streams of all outputs [G, M, N] of one call: their
    coordinates (global row and column) and how many draws each has spent."""

    def __init__(self, seed: int, layer: int, G: int, M: int, N: int, row_offset: int):
        self.seed, self.layer = seed, layer
        self.row = (row_offset + torch.arange(M, dtype=torch.int64)).view(1, M, 1).expand(G, M, N)
        self.col = (torch.arange(G, dtype=torch.int64).view(G, 1, 1) * N
                    + torch.arange(N, dtype=torch.int64).view(1, 1, N)).expand(G, M, N)
        self.drawn = torch.zeros(G, M, N, dtype=torch.int64)

    def uniform(self, sel: torch.Tensor) -> torch.Tensor:
        """One draw for each selected output (bool [G, M, N]), in flat order,
        advancing its draw index."""
        u = uniform62(self.seed, self.layer, self.row[sel], self.col[sel], self.drawn[sel])
        self.drawn[sel] += 1
        return u

    def first_events(self, gap: torch.Tensor, K: int) -> torch.Tensor:
        """Position of every output's first MAC with an event (K: none), int64
        [G, M, N]: the screening word v on top of the first uniform, the
        output's own draw 0 below it, drawn only where v * 2^30 < gap[K]
        leaves an event possible."""
        next_event = torch.full(self.row.shape, K, dtype=torch.int64)
        high = screen_word(self.seed, self.layer, self.row, self.col) << SCREEN_SHIFT
        possible = high < gap[K]
        if bool(possible.any()):
            low = self.uniform(possible) & ((1 << SCREEN_SHIFT) - 1)
            next_event[possible] = _sample_gap(gap, high[possible] | low)
        return next_event


def _sample_gap(gap: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Largest g in [0, K] with gap[g] <= u: clean MACs before the next event."""
    return torch.searchsorted(gap, u, right=True) - 1


def _event_bits(streams: _Streams, hit: torch.Tensor, first: torch.Tensor, nxt: torch.Tensor,
                W: int) -> torch.Tensor:
    """The erring bits (a mask per output, in hit's flat order) of the outputs
    that have an event at this MAC (hit, bool [G, M, N])."""
    # Lowest erring bit: smallest b with u < first[b].
    low = torch.searchsorted(first, streams.uniform(hit), right=True).clamp(max=W - 1)
    bits = torch.bitwise_left_shift(torch.ones_like(low), low)
    # From erring bit j, one draw picks the next erring bit above it (or
    # none); no draw when no higher bit can err.
    hit_idx = hit.nonzero(as_tuple=True)
    j = low.clone()
    can_err_above = lambda j: (j < W - 1) & (nxt[j.clamp(max=W - 1), W - 1] > 0)  # noqa: E731
    live = can_err_above(j)
    while bool(live.any()):
        sel = torch.zeros_like(hit)
        sel[tuple(ix[live] for ix in hit_idx)] = True
        v = streams.uniform(sel)  # flat order of sel == order of live entries
        b = (nxt[j[live]] <= v[:, None]).sum(1)  # first b with v < next[j][b]; W if none
        found = b < W
        idx = live.nonzero(as_tuple=True)[0]
        bits[idx[found]] |= torch.bitwise_left_shift(torch.ones_like(b[found]), b[found])
        j[idx[found]] = b[found]
        still = torch.zeros_like(live)
        still[idx[found]] = True
        live = still & can_err_above(j)
    return bits


def systolic_matmul(
    a: torch.Tensor,
    w: torch.Tensor,
    p_bits: Union[torch.Tensor, Sequence[float]],
    protect: int = 0,
    seed: int = 0,
    layer: int = 0,
    row_offset: int = 0,
    rows: int = ROWS,
    drop: bool = False,
    patterns=None,
    joint=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for :func:`pyvs.ops.systolic_matmul` (same arguments, same
    results, no input validation beyond what the loop needs). CPU only."""
    if p_bits is None:
        p_bits = [0.0] * (len(joint) - 1)
    p = [float(x) for x in (p_bits.tolist() if isinstance(p_bits, torch.Tensor) else p_bits)]
    W = len(p)
    batched = a.dim() == 3
    a3 = (a if batched else a.unsqueeze(0)).to(torch.int64).cpu()
    w3 = (w if batched else w.unsqueeze(0)).to(torch.int64).cpu()
    G, M, K = a3.shape
    mod = 1 << W
    gap, first, nxt, any_event = fault_tables(p, K)
    conditioned = joint is not None
    if conditioned:
        gap, accept, cum, pats, any_event = conditioned_tables(patterns, joint, K)
    streams = _Streams(seed, layer, G, M, w3.shape[2], row_offset)
    next_event = streams.first_events(gap, K) if any_event else torch.full((G, M, w3.shape[2]), K)
    counts = torch.zeros(2, W, dtype=torch.int64)  # injected, corrected
    protected = (protect >> torch.arange(W)) & 1
    out = torch.zeros(G, M, w3.shape[2], dtype=torch.int64)
    s = torch.zeros_like(out)  # the W-bit partial sums
    for k in range(K):
        if k % rows == 0:
            s.zero_()
        before = s
        product = a3[:, :, k, None] * w3[:, None, k, :]
        s = (s + product) % mod
        hit = next_event == k
        if hit.any():
            if conditioned:  # rejected candidates get no bits: no event
                bits = _conditioned_bits(streams, hit, before[hit], (product % mod).expand_as(s)[hit],
                                         accept, cum, pats, W)
            else:
                bits = _event_bits(streams, hit, first, nxt, W)
            # TE-Drop: a MAC with a detected error keeps the sum from before it.
            skip = ((bits & protect) != 0) & drop
            on = (bits[:, None] >> torch.arange(W)) & 1  # [hits, W]
            counts[0] += (on * (1 - protected) * ~skip[:, None]).sum(0)  # flips that land
            counts[1] += (on * protected).sum(0)  # detected: replayed, or dropped
            s[hit] = torch.where(skip, before[hit], s[hit] ^ (bits & ~protect))
            next_event[hit] = ((k + 1) + _sample_gap(gap, streams.uniform(hit))).clamp(max=K)
        if k % rows == rows - 1 or k == K - 1:
            out += torch.where(s >= mod // 2, s - mod, s)  # sign_extend_W
    out = ((out + (1 << 31)) % (1 << 32) - (1 << 31)).to(torch.int32)  # wrap to int32
    return (out if batched else out.squeeze(0)), counts


# ---- the int8 runtime's elementwise steps, as PyTorch ops compute them -------

def quantize(x: torch.Tensor, scale: float, zero_point: int, dtype: str = "uint8") -> torch.Tensor:
    """Reference for :func:`pyvs.ops.quantize`."""
    qmin, qmax = (0, 255) if dtype == "uint8" else (-128, 127)
    inv = 1.0 / torch.tensor(scale, dtype=torch.float32)
    q = (x.float() * inv).round_().add_(zero_point).clamp_(qmin, qmax)
    return q.to(torch.uint8 if dtype == "uint8" else torch.int8)


def requantize(acc: torch.Tensor, offset: torch.Tensor, multiplier: torch.Tensor, lo: int, hi: int,
               out_scale: float, channel_dim: int = 1) -> torch.Tensor:
    """Reference for :func:`pyvs.ops.requantize`."""
    per_channel = (lambda t: t.view(-1, 1)) if channel_dim == 0 else (lambda t: t)  # noqa: E731
    y = acc.clone().add_(per_channel(offset)).float().mul_(per_channel(multiplier)).round_()
    return y.clamp_(lo, hi).mul_(out_scale)
