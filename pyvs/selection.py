"""Which accumulator bits to protect: strategies, and the automatic search.

Strategies (``pyvs sweep --strategies``):
  none        no protection
  all         every accumulator bit
  msbN        the N most significant bits (e.g. msb8)
  0xMASK      an explicit bit mask (e.g. 0xff000000)
  auto        the cheapest mask that meets the accuracy budget (below)

The automatic search, for one voltage (per-bit probabilities p_b):
1. Rank the bits that can err by their expected error magnitude per MAC,
   p_b * 2^b: a flip of bit b moves the accumulator by 2^b, so with equal
   rates the high bits matter most, and a bit that never errs needs no Razor.
2. Protecting the top-k of that ranking costs more energy (Razor bits) and
   more latency (replays) as k grows, and accuracy improves with k; so find
   the smallest k that meets the budget by binary search over k, each step
   verified by a real evaluation: about log2(#erring bits) + 1 evaluations.
   k = all erring bits always meets it (then the output equals the golden run).
A point meets the budget when both losses are within it: top-1 agreement
with the golden run (1 - agree) and labelled top-1 (clean top-1 - top-1).
"""
from __future__ import annotations

import re
from typing import Callable, List, Optional, Tuple

import torch

_MSB = re.compile(r"^msb(\d+)$")


def parse_strategy(name: str, acc_bits: int) -> Optional[int]:
    """The fixed protect mask of a strategy, or None for 'auto'. Unknown
    names and masks wider than the accumulator are ValueErrors."""
    full = (1 << acc_bits) - 1
    if name == "none":
        return 0
    if name == "all":
        return full
    if name == "auto":
        return None
    m = _MSB.match(name)
    if m:
        k = int(m.group(1))
        if not 0 <= k <= acc_bits:
            raise ValueError(f"strategy {name!r}: at most {acc_bits} bits can be protected")
        return (full >> (acc_bits - k)) << (acc_bits - k) if k else 0
    if name.lower().startswith("0x"):
        try:
            mask = int(name, 16)
        except ValueError:
            raise ValueError(f"strategy {name!r} is not a hexadecimal mask") from None
        if mask > full:
            raise ValueError(f"strategy {name!r}: the mask is wider than the {acc_bits}-bit accumulator")
        return mask
    raise ValueError(f"unknown strategy {name!r}: use none, all, msbN, 0xMASK or auto")


def bit_ranking(p_bits: torch.Tensor) -> List[int]:
    """Bits with p_b > 0, most harmful first (p_b * 2^b, ties to the higher bit)."""
    p = p_bits.tolist()
    erring = [b for b in range(len(p)) if p[b] > 0]
    return sorted(erring, key=lambda b: (p[b] * 2.0 ** b, b), reverse=True)


def meets_budget(row: dict, clean_top1: float, budget: float) -> bool:
    return (1.0 - row["agree"]) <= budget + 1e-12 and (clean_top1 - row["top1"]) <= budget + 1e-12


def auto_select(evaluate_mask: Callable[[int], dict], p_bits: torch.Tensor, clean_top1: float,
                budget: float) -> Tuple[int, List[Tuple[int, dict]]]:
    """The smallest top-k mask of :func:`bit_ranking` that meets the budget.

    evaluate_mask(mask) -> result row (with 'agree' and 'top1') runs one
    evaluation. Returns (mask, [(mask, row) for every evaluation made])."""
    if budget < 0:
        raise ValueError(f"the accuracy-loss budget must be >= 0, got {budget}")
    ranking = bit_ranking(p_bits)
    mask_of = lambda k: sum(1 << b for b in ranking[:k])  # noqa: E731
    tried: List[Tuple[int, dict]] = []
    cache = {}

    def ok(k: int) -> bool:
        if k not in cache:
            row = evaluate_mask(mask_of(k))
            tried.append((mask_of(k), row))
            cache[k] = meets_budget(row, clean_top1, budget)
        return cache[k]

    if not ranking or ok(0):
        return 0, tried
    lo, hi = 0, len(ranking)  # ok(lo) is False; ok(hi) holds (golden output)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    if hi == len(ranking) and hi not in cache:
        ok(hi)  # measure the final point (its replays and counts are needed anyway)
    return mask_of(hi), tried


def pareto_front(points: List[Tuple[float, float]]) -> List[int]:
    """Indices of the non-dominated (energy saving, accuracy loss) points:
    higher saving and lower loss are better."""
    front = []
    for i, (s, l) in enumerate(points):
        dominated = any((s2 >= s and l2 <= l) and (s2 > s or l2 < l) for j, (s2, l2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])
