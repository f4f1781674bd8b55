"""Operand distributions of the PE: what the multiplier and the accumulator
adder see, which decides how long the sensitized carry chains are.

- :class:`UniformOperands`: a, w uniform int8; the accumulator register x
  uniform over W-bit words, independent of the product. Then every adder
  cell propagates (x_j != y_j) with probability 1/2, independently, whatever
  the product's distribution: the carry chains have a closed form.
- :class:`EmpiricalOperands`: a and w drawn from given int8 histograms (e.g.
  a real layer's activations and weights), and x a real partial sum: the sum
  of j products of the same distribution, j uniform in [0, rows). Partial sums
  are small compared to 2^W, so their high bits are sign-extension copies, and
  adding a product of the other sign propagates a carry through all of them:
  the long chains that make the MSBs fail first.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


class UniformOperands:
    name = "uniform"

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

    def __init__(self, act_hist: Sequence[float], weight_hist: Sequence[float], rows: int = 256):
        self.act = _as_hist(act_hist, "activation")
        self.weight = _as_hist(weight_hist, "weight")
        if rows < 1:
            raise ValueError(f"rows must be >= 1, got {rows}")
        self.rows = int(rows)

    @classmethod
    def from_tensors(cls, activations, weights, rows: int = 256) -> "EmpiricalOperands":
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
