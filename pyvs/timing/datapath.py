"""Gate netlist of one PE's multiply-accumulate: a signed multiplier feeding
a W-bit two's-complement accumulator adder.

Both timing models read this one description: the analytic model
(:mod:`pyvs.timing.model`) propagates delay distributions through the
multiplier's gates and uses the adder's cell structure in closed form; the
Monte Carlo simulator (:mod:`pyvs.timing.montecarlo`) evaluates every gate on
real operand values with sampled delays.

Multiplier: Baugh-Wooley signed n x m (partial products a_i b_j, NAND
where exactly one index is a sign bit, constants at 2^(n-1), 2^(m-1) and
2^(n+m-1)), a Wallace tree of full/half adders, and a Kogge-Stone final
adder: a fast multiplier, so that the accumulator's carry chain, not the
multiplier, decides which bits fail first. The (n+m)-bit product is
sign-extended to W bits by fan-out of its top bit.

Two datapaths are built from it. The op multiplies raw 8-bit activations
(uint8, 0..255, in torch's quint8 convention, or int8) by int8 weights, so
the PE that matches it takes its activation as a 9-bit two's-complement
number (uint8 zero-extended, int8 sign-extended) into a 9 x 8 multiplier:
``build_mac(act_bits=9)``, what the event-driven model times. The static
model of the first pyvs (``act_bits=8``: a signed 8 x 8 multiplier, int8
operands) is kept as it was, so that its tables and results stay
reproducible.

Accumulator adders (:data:`ADDERS`, ``--adder``): one class per
architecture, each a ``build`` that wires its cells (what the event-driven
simulator times). The ripple-carry adder is the default and the only one the
static model's closed form knows; Kogge-Stone and Brent-Kung are the two
classic parallel-prefix adders (Kogge & Stone, IEEE TC 1973; Brent & Kung,
IEEE TC 1982): log2(W) levels of prefix cells instead of a W-cell carry
chain, Kogge-Stone with the fewest levels and the most cells, Brent-Kung
with 2 log2(W) - 1 levels and about 2W cells. The clock is designed for the
ripple-carry MAC (:func:`pyvs.timing.clock.clock_period`), so a faster adder
on the same clock keeps what it saves as slack.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple

from ..accumulator import MAX_BITS, MIN_BITS
from ..hardware import ACC_BITS

CONST0, CONST1 = 0, 1


@dataclasses.dataclass
class Gate:
    kind: str            # 'and', 'nand', 'or', 'xor', 'mux'
    out: int
    ins: Tuple[int, ...]  # mux: (select, data_if_1, data_if_0)


class Netlist:
    """Nets are integers (0 and 1 are the constants); gates are kept in
    topological order."""

    def __init__(self):
        self.n_nets = 2
        self.gates: List[Gate] = []

    def new_net(self) -> int:
        self.n_nets += 1
        return self.n_nets - 1

    def gate(self, kind: str, *ins: int) -> int:
        out = self.new_net()
        self.gates.append(Gate(kind, out, tuple(ins)))
        return out

    def full_adder(self, x: int, y: int, z: int) -> Tuple[int, int]:
        p = self.gate("xor", x, y)
        s = self.gate("xor", p, z)
        c = self.gate("or", self.gate("and", x, y), self.gate("and", p, z))
        return s, c

    def half_adder(self, x: int, y: int) -> Tuple[int, int]:
        return self.gate("xor", x, y), self.gate("and", x, y)


def build_multiplier(net: Netlist, a: List[int], w: List[int]) -> List[int]:
    """Baugh-Wooley signed len(a) x len(w) multiplier with a Wallace-tree
    reduction and a Kogge-Stone final adder, as a fast PE multiplier would be
    built; returns the len(a) + len(w) product nets (LSB first, the product
    mod 2^(n+m))."""
    n, m = len(a), len(w)
    width = n + m
    cols: Dict[int, List[int]] = {c: [] for c in range(width)}
    for i in range(n):
        for j in range(m):
            sign_term = (i == n - 1) != (j == m - 1)
            cols[i + j].append(net.gate("nand" if sign_term else "and", a[i], w[j]))
    # -x = NOT(x) - 1 for each negative partial product: the -1s sum to
    # -2^(n+m-1) + 2^(n-1) + 2^(m-1), i.e. these constants mod 2^(n+m)
    # (one constant at 2^n when n == m, as the first pyvs built it).
    for c in ((n,) if n == m else (n - 1, m - 1)) + (width - 1,):
        cols[c].append(CONST1)
    # Wallace tree: every stage compresses each column's bits three at a time
    # with full adders (two at a time with a half adder when that is needed to
    # reach two rows), all columns in parallel, until two rows remain.
    while max(len(b) for b in cols.values()) > 2:
        nxt: Dict[int, List[int]] = {c: [] for c in range(width)}
        for c in range(width):
            bits = cols[c]
            i = 0
            while len(bits) - i >= 3:
                s, carry = net.full_adder(*bits[i:i + 3])
                nxt[c].append(s)
                if c + 1 < width:
                    nxt[c + 1].append(carry)
                i += 3
            if len(bits) - i == 2 and len(bits) > 2:
                s, carry = net.half_adder(*bits[i:i + 2])
                nxt[c].append(s)
                if c + 1 < width:
                    nxt[c + 1].append(carry)
                i += 2
            nxt[c].extend(bits[i:])
        cols = nxt
    x = [cols[c][0] if len(cols[c]) > 0 else CONST0 for c in range(width)]
    y = [cols[c][1] if len(cols[c]) > 1 else CONST0 for c in range(width)]
    return kogge_stone(net, x, y)


def _prefix_cell(net: Netlist, G: List[int], P: List[int], hi: int, lo: int, need_p: bool = True) -> Tuple[int, int]:
    """(G, P) of the span of ``hi`` joined with the span below it that ends at
    ``lo``: (G_hi | P_hi & G_lo, P_hi & P_lo); P only when a later cell reads it."""
    g = net.gate("or", G[hi], net.gate("and", P[hi], G[lo]))
    return g, (net.gate("and", P[hi], P[lo]) if need_p else P[hi])


def _prefix_sums(net: Netlist, x: List[int], y: List[int], tree) -> List[int]:
    """Sum bits of a parallel-prefix adder (mod 2^len(x), carry-in 0):
    p_i = x_i ^ y_i, g_i = x_i & y_i, ``tree(G, P)`` turns them into the
    prefix generates G[i] of bits 0..i, and s_i = p_i ^ G[i - 1]."""
    p0 = [net.gate("xor", xi, yi) for xi, yi in zip(x, y)]
    G = tree([net.gate("and", xi, yi) for xi, yi in zip(x, y)], list(p0))
    return [p0[0]] + [net.gate("xor", p0[i], G[i - 1]) for i in range(1, len(x))]


def kogge_stone(net: Netlist, x: List[int], y: List[int]) -> List[int]:
    """Kogge-Stone parallel-prefix adder (mod 2^len(x)): ceil(log2 n) levels,
    every position combined with the one ``dist`` below it at each level."""
    n = len(x)

    def tree(G, P):
        dist = 1
        while dist < n:
            G2, P2 = list(G), list(P)
            for i in range(dist, n):
                G2[i], P2[i] = _prefix_cell(net, G, P, i, i - dist)
            G, P = G2, P2
            dist *= 2
        return G
    return _prefix_sums(net, x, y, tree)


def brent_kung(net: Netlist, x: List[int], y: List[int]) -> List[int]:
    """Brent-Kung parallel-prefix adder (mod 2^len(x)): an up-sweep that
    builds the prefixes of positions 2^k - 1 and spans of powers of two,
    then a down-sweep that fills the positions in between."""
    n = len(x)

    def tree(G, P):
        dist = 1
        while dist < n:
            for i in range(2 * dist - 1, n, 2 * dist):
                G[i], P[i] = _prefix_cell(net, G, P, i, i - dist)
            dist *= 2
        dist //= 4
        while dist >= 1:
            for i in range(3 * dist - 1, n, 2 * dist):
                G[i], P[i] = _prefix_cell(net, G, P, i, i - dist, need_p=False)
            dist //= 2
        return G
    return _prefix_sums(net, x, y, tree)


class RippleCarryAdder:
    """W-bit ripple-carry adder of propagate/generate cells:
    p_j = x_j XOR y_j, g_j = x_j AND y_j, c_{j+1} = p_j ? c_j : g_j (a MUX on
    the carry path), s_j = p_j XOR c_j; c_0 = 0.

    Timing: XOR and AND are timed statically; the carry MUX is sensitized: it
    settles when its select and the *selected* data input have settled. So
    the carry into bit b comes from the nearest cell i < b whose p_i = 0 (a
    generate or kill) and ripples through the propagating cells in between:
    that chain's length is what the operands decide."""

    name = "ripple"

    def build(self, net: Netlist, x: List[int], y: List[int]) -> List[int]:
        carry, sums = CONST0, []
        for xj, yj in zip(x, y):
            p = net.gate("xor", xj, yj)
            g = net.gate("and", xj, yj)
            sums.append(net.gate("xor", p, carry))
            carry = net.gate("mux", p, carry, g)
        return sums


class KoggeStoneAdder:
    """W-bit Kogge-Stone adder (:func:`kogge_stone`): ceil(log2 W) levels of
    prefix cells, about W log2 W of them; every carry path is short."""

    name = "kogge-stone"

    def build(self, net: Netlist, x: List[int], y: List[int]) -> List[int]:
        return kogge_stone(net, x, y)


class BrentKungAdder:
    """W-bit Brent-Kung adder (:func:`brent_kung`): 2 ceil(log2 W) - 1 levels,
    about 2W prefix cells: fewer cells than Kogge-Stone, longer paths."""

    name = "brent-kung"

    def build(self, net: Netlist, x: List[int], y: List[int]) -> List[int]:
        return brent_kung(net, x, y)


ADDERS = {cls.name: cls for cls in (RippleCarryAdder, KoggeStoneAdder, BrentKungAdder)}
DEFAULT_ADDER = "ripple"


def adder(name: str):
    try:
        return ADDERS[name]()
    except KeyError:
        raise ValueError(f"unknown adder {name!r}; known: {sorted(ADDERS)}") from None


@dataclasses.dataclass
class MacNetlist:
    net: Netlist
    a: List[int]          # multiplier operand (activation), act_bits nets, LSB first
    w: List[int]          # multiplier operand (weight), 8 nets
    x: List[int]          # accumulator register, W nets
    product: List[int]    # product nets (act_bits + 8, at most W)
    sums: List[int]       # W accumulator-adder outputs
    n_multiplier_gates: int


def build_mac(acc_bits: int = ACC_BITS, adder_name: str = DEFAULT_ADDER, act_bits: int = 8,
              weight_bits: int = 8) -> MacNetlist:
    """The PE datapath: (a * w) sign-extended to acc_bits, plus x; a and w
    signed, act_bits and weight_bits wide."""
    if not MIN_BITS <= acc_bits <= MAX_BITS:
        raise ValueError(f"acc_bits must be between 8 and 32, got {acc_bits}")
    net = Netlist()
    a = [net.new_net() for _ in range(act_bits)]
    w = [net.new_net() for _ in range(weight_bits)]
    x = [net.new_net() for _ in range(acc_bits)]
    product = build_multiplier(net, a, w)
    n_mult = len(net.gates)
    y = [product[min(j, len(product) - 1)] for j in range(acc_bits)]  # sign extension
    sums = adder(adder_name).build(net, x, y[:acc_bits])
    return MacNetlist(net, a, w, x, product[:acc_bits], sums, n_mult)


def gate_delays(mac: MacNetlist, tech) -> List[float]:
    """Each gate's nominal delay, units of d(V_nom), in netlist order."""
    return [tech.gate_delay(g.kind) for g in mac.net.gates]


def arrivals(mac: MacNetlist, delays: Sequence) -> list:
    """The topologically longest path to every net (static timing: a gate's
    output arrives its delay after its latest input), ``delays`` one per
    gate in netlist order; the inputs arrive at 0. The one longest-path
    walk of the package."""
    arr = [0] * mac.net.n_nets
    for g, d in zip(mac.net.gates, delays):
        arr[g.out] = max(arr[i] for i in g.ins) + d
    return arr


def worst_case_path(mac: MacNetlist, tech) -> float:
    """Topologically longest path of the whole MAC at nominal (mean) delays,
    every gate timed statically: the path the clock is designed for."""
    arr = arrivals(mac, gate_delays(mac, tech))
    return max(arr[s] for s in mac.sums)
