"""Operand distributions of the PE: what the multiplier and the accumulator
adder see, which decides how long the sensitized carry chains are.

- :class:`UniformOperands`: a, w uniform int8; the accumulator register x
  uniform over W-bit words, independent of the product. Then every adder
  cell propagates (x_j != y_j) with probability 1/2, independently, whatever
  the product's distribution: the carry chains have a closed form.
- :class:`Pairs`: what a PE sees in two consecutive cycles (the event-driven
  model times the transition between them), uniform (:func:`uniform_pairs`)
  or captured from a model's layers (:mod:`pyvs.dataflow`).
- :class:`EmpiricalOperands`: a and w drawn from given int8 histograms (e.g.
  a real layer's activations and weights), and x a real partial sum: the sum
  of j products of the same distribution, j uniform in [0, rows). Partial sums
  are small compared to 2^W, so their high bits are sign-extension copies, and
  adding a product of the other sign propagates a carry through all of them:
  the long chains that make the MSBs fail first.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from ..hardware import ROWS


class UniformOperands:
    name = "uniform"

    # Every uniform operand model is the same model.
    def __eq__(self, other) -> bool:
        return isinstance(other, UniformOperands)

    def __hash__(self) -> int:
        return hash(self.name)

    def sample(self, n: int, acc_bits: int, rng: np.random.Generator):
        """n operand triples: a, w int8 values and x in [0, 2^acc_bits), as int64 arrays."""
        a = rng.integers(-128, 128, n)
        w = rng.integers(-128, 128, n)
        x = rng.integers(0, 1 << acc_bits, n, dtype=np.int64)
        return a, w, x

    def describe(self) -> dict:
        return {"kind": self.name}


def _as_hist(h: Sequence[float], what: str) -> np.ndarray:
    h = np.asarray(h, dtype=np.float64)
    if h.shape != (256,):
        raise ValueError(f"{what} histogram must have 256 bins (int8 values -128..127), got shape {h.shape}")
    if not np.all(np.isfinite(h)) or np.any(h < 0) or h.sum() <= 0:
        raise ValueError(f"{what} histogram must be finite, non-negative and not all zero")
    return h / h.sum()


class EmpiricalOperands:
    """Operands from int8 histograms. act_hist, weight_hist: 256 non-negative
    weights for the values -128..127 (normalized here); rows: MACs per tile
    (the systolic array height), over which partial sums build up."""

    name = "empirical"

    def __init__(self, act_hist: Sequence[float], weight_hist: Sequence[float], rows: int = ROWS):
        self.act = _as_hist(act_hist, "activation")
        self.weight = _as_hist(weight_hist, "weight")
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        self.rows = int(rows)

    @classmethod
    def from_tensors(cls, activations, weights, rows: int = ROWS) -> "EmpiricalOperands":
        """Histograms of two int8 tensors (or arrays) of observed values."""
        def hist(t):
            v = np.asarray(t).astype(np.int64).ravel()
            if v.size == 0 or v.min() < -128 or v.max() > 127:
                raise ValueError("operand values must be a non-empty set of int8 values")
            return np.bincount(v + 128, minlength=256)
        return cls(hist(activations), hist(weights), rows)

    def sample(self, n: int, acc_bits: int, rng: np.random.Generator):
        values = np.arange(-128, 128)
        a = rng.choice(values, n, p=self.act)
        w = rng.choice(values, n, p=self.weight)
        # Partial sums of j earlier products, j uniform in [0, rows).
        j = rng.integers(0, self.rows, n)
        x = np.zeros(n, dtype=np.int64)
        for step in range(self.rows - 1):
            live = j > step
            m = int(live.sum())
            if m == 0:
                break
            x[live] += rng.choice(values, m, p=self.act) * rng.choice(values, m, p=self.weight)
        return a, w, x & ((1 << acc_bits) - 1)

    def describe(self) -> dict:
        return {"kind": self.name, "rows": self.rows,
                "act_hist": self.act.tolist(), "weight_hist": self.weight.tolist()}


def operands(spec: Optional[object]):
    """None or 'uniform' -> UniformOperands; an operand object is returned as is."""
    if spec is None or spec == "uniform":
        return UniformOperands()
    if isinstance(spec, (UniformOperands, EmpiricalOperands)):
        return spec
    raise ValueError(f"operands must be 'uniform' or an EmpiricalOperands, got {spec!r}")


# ---- consecutive-cycle operand pairs, for the event-driven model -----------

@dataclasses.dataclass
class Pairs:
    """What a PE sees in two consecutive cycles, for N samples (int64
    arrays [N]): its activation register holds prev_a, then a (the op's
    activations: uint8 0..255 or int8 -128..127), its weight prev_w, then w
    (int8; prev_w None: the weight stays, as in a weight-stationary array),
    and its partial-sum input holds prev_x, then x (W-bit patterns,
    0 .. 2^W - 1)."""

    prev_a: np.ndarray
    a: np.ndarray
    w: np.ndarray
    prev_x: np.ndarray
    x: np.ndarray
    prev_w: Optional[np.ndarray] = None

    def __post_init__(self):
        if self.prev_w is None:
            self.prev_w = self.w
        arrays = [np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)]
        n = len(arrays[0])
        if n == 0 or any(v.ndim != 1 or len(v) != n for v in arrays):
            raise ValueError("operand pairs must be non-empty 1-D arrays of one length, got shapes "
                             f"{[v.shape for v in arrays]}")
        for f, v in zip(dataclasses.fields(self), arrays):
            setattr(self, f.name, v.astype(np.int64))
        for name in ("prev_a", "a"):
            v = getattr(self, name)
            if v.min() < -128 or v.max() > 255:
                raise ValueError(f"operand pairs: {name} must hold uint8 or int8 values, got {v.min()}..{v.max()}")
        if min(self.w.min(), self.prev_w.min()) < -128 or max(self.w.max(), self.prev_w.max()) > 127:
            raise ValueError("operand pairs: w must hold int8 values")

    def __len__(self) -> int:
        return len(self.a)

    def check_width(self, acc_bits: int) -> None:
        for name in ("prev_x", "x"):
            v = getattr(self, name)
            if v.min() < 0 or v.max() >> acc_bits:
                raise ValueError(f"operand pairs: {name} must be {acc_bits}-bit patterns")

    def batch(self, lo: int, hi: int):
        """(previous inputs, current inputs) of samples lo .. hi - 1, as the
        simulator takes them."""
        return ({"a": self.prev_a[lo:hi], "w": self.prev_w[lo:hi], "x": self.prev_x[lo:hi]},
                {"a": self.a[lo:hi], "w": self.w[lo:hi], "x": self.x[lo:hi]})

    def take(self, index) -> "Pairs":
        """The pairs at ``index`` (a slice or an index array)."""
        return Pairs(*[getattr(self, f.name)[index] for f in dataclasses.fields(self)])

    @classmethod
    def concat(cls, parts: Sequence["Pairs"]) -> "Pairs":
        return cls(*[np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)])


def uniform_pairs(n: int, acc_bits: int, rng: np.random.Generator, unsigned: bool = False) -> Pairs:
    """Independent uniform operands in both cycles: a uniform int8 (uint8
    with ``unsigned``), w uniform int8, x uniform over W-bit words."""
    lo, hi = (0, 256) if unsigned else (-128, 128)
    return Pairs(rng.integers(lo, hi, n), rng.integers(lo, hi, n), rng.integers(-128, 128, n),
                 rng.integers(0, 1 << acc_bits, n, dtype=np.int64), rng.integers(0, 1 << acc_bits, n, dtype=np.int64))
