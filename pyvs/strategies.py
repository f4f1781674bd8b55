"""Which accumulator bits to protect: strategies, the automatic search, and
the budgets a point must meet (:class:`Budget`).

Strategies (``pyvs sweep --strategies``):
  none        no protection
  all         every accumulator bit
  msbN        the N most significant bits (e.g. msb8)
  0xMASK      an explicit bit mask (e.g. 0xff000000)
  auto        the cheapest mask that meets the accuracy budget (below)
  NAME-drop   any of these with TE-Drop (e.g. auto-drop, msb2-drop): a
              detected error drops the MAC's update instead of replaying
              it (no stall; the product is lost: see pyvs.ops.systolic_matmul)

The automatic search, for one voltage (e_b: the expected errors of bit b
per image, the per-bit probabilities times each layer's MACs, summed over
the layers):
1. Rank the bits that can err by their expected error magnitude, e_b * 2^b:
   a flip of bit b moves the accumulator by 2^b, so with equal rates the
   high bits matter most, and a bit that never errs needs no Razor.
2. Protecting the top-k of that ranking costs more energy (Razor bits) and
   more latency (replays) as k grows, and accuracy improves with k; so find
   the smallest k that meets the budget by binary search over k, each step
   verified by a real evaluation: about log2(#erring bits) + 1 evaluations.
   k = all erring bits always meets it (then the output equals the golden run)
   with replays; with TE-Drop it need not (every detected error loses a
   product), and a point where even k = all misses the budget is reported
   as measured, flagged.
A point meets the budget when both losses are within it: top-1 agreement
with the golden run (1 - agree) and labelled top-1 (clean top-1 - top-1).
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, List, Optional, Tuple

import torch

from .accumulator import full_mask, msb_mask

_MSB = re.compile(r"^msb(\d+)$")
_DROP = "-drop"
SEARCH = "-search"  # suffix of the rows of an automatic search's steps (auto-search, auto-drop-search)


@dataclasses.dataclass(frozen=True)
class Budget:
    """What an operating point must meet, as fractions.

    Attributes:
        accuracy: the largest loss, in top-1 against the labels and in top-1
            agreement with the golden run, that 'auto' accepts: 0.003 is
            0.3 points (:meth:`from_points` takes points).
        latency: the largest latency overhead (stall cycles / base cycles)
            of a useful point; points above it are flagged: 0.01 is 1 %.
    """

    accuracy: float = 0.003
    latency: float = 0.01

    def __post_init__(self):
        for name in ("accuracy", "latency"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and 0 <= value <= 1):
                raise ValueError(f"Budget.{name} must be a fraction in [0, 1], got {value!r}")

    @classmethod
    def from_points(cls, accuracy_points: float = 0.3, latency_percent: float = 1.0) -> "Budget":
        """From the command line's units: points of top-1, and per cent."""
        return cls(accuracy_points / 100.0, latency_percent / 100.0)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def on_error(name: str) -> str:
    """What a strategy does with a detected error: 'drop' for NAME-drop
    strategies, else 'replay'."""
    return "drop" if name.endswith(_DROP) else "replay"


def parse_strategy(name: str, acc_bits: int) -> Optional[int]:
    """The fixed protect mask of a strategy, or None for 'auto' and
    'auto-drop'. Unknown names and masks wider than the accumulator are
    ValueErrors."""
    if not isinstance(name, str):
        raise ValueError(f"a strategy must be a name, got {name!r}")
    if name.endswith(_DROP):
        base = name[:-len(_DROP)]
        if base in ("none", "") or base.endswith(_DROP):
            raise ValueError(f"strategy {name!r}: '-drop' needs protected bits, e.g. auto-drop or msb2-drop")
        return parse_strategy(base, acc_bits)
    if name == "none":
        return 0
    if name == "all":
        return full_mask(acc_bits)
    if name == "auto":
        return None
    m = _MSB.match(name)
    if m:
        k = int(m.group(1))
        if not 0 <= k <= acc_bits:
            raise ValueError(f"strategy {name!r}: at most {acc_bits} bits can be protected")
        return msb_mask(k, acc_bits)
    if name.lower().startswith("0x"):
        try:
            mask = int(name, 16)
        except ValueError:
            raise ValueError(f"strategy {name!r} is not a hexadecimal mask") from None
        if mask > full_mask(acc_bits):
            raise ValueError(f"strategy {name!r}: the mask is wider than the {acc_bits}-bit accumulator")
        return mask
    raise ValueError(f"unknown strategy {name!r}: use none, all, msbN, 0xMASK or auto, "
                     "each but none optionally with -drop (TE-Drop)")


def bit_ranking(rates: torch.Tensor) -> List[int]:
    """Bits with a rate e_b > 0 (float64 [W]: per-bit probabilities or
    expected errors per image), most harmful first (e_b * 2^b, ties to the
    higher bit)."""
    p = rates.tolist()
    erring = [b for b in range(len(p)) if p[b] > 0]
    return sorted(erring, key=lambda b: (p[b] * 2.0 ** b, b), reverse=True)


def auto_select(evaluate_mask: Callable, rates: torch.Tensor, budget: float) -> Tuple[int, list]:
    """The smallest top-k mask of :func:`bit_ranking` that meets the budget.

    evaluate_mask(mask) -> a result whose ``accuracy`` (a
    :class:`pyvs.evaluate.Accuracy`) tells whether it meets ``budget``
    (fraction) runs one evaluation; rates: float64 [W], see
    :func:`bit_ranking`. Returns (mask, [(mask, result) for every
    evaluation made])."""
    if budget < 0:
        raise ValueError(f"the accuracy-loss budget must be >= 0, got {budget}")
    ranking = bit_ranking(rates)
    mask_of = lambda k: sum(1 << b for b in ranking[:k])  # noqa: E731
    tried: list = []
    cache = {}

    def ok(k: int) -> bool:
        if k not in cache:
            row = evaluate_mask(mask_of(k))
            tried.append((mask_of(k), row))
            cache[k] = row.accuracy.meets(budget)
        return cache[k]

    if not ranking or ok(0):
        return 0, tried
    lo, hi = 0, len(ranking)  # ok(lo) is False; ok(hi) holds (golden output; with drops, assumed)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    if hi == len(ranking) and hi not in cache:
        ok(hi)  # measure the final point (its replays and counts are needed anyway)
    return mask_of(hi), tried
