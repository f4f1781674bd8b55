"""Argument checks shared by every step, so that a mistake reads the same
wherever it is made: each returns the checked value or raises a ValueError
(TypeError for a value of the wrong kind) whose message names the argument,
what was expected and what was given."""
from __future__ import annotations

import math
import numbers
from typing import Optional


def integer(value, name: str, lo: Optional[int] = None, hi: Optional[int] = None) -> int:
    """``value`` as an int in [lo, hi] (either bound may be None). Floats,
    strings and bools are refused, never rounded: ``rows=2.5`` is a mistake."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ValueError(f"{name} must be an integer in {span}, got {value}")
    return value


def number(value, name: str, *, positive: bool = False, minimum: Optional[float] = None,
           maximum: Optional[float] = None) -> float:
    """``value`` as a finite float, > 0 if ``positive``, within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value
