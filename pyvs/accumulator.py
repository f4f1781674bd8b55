"""The PE's accumulator, as every step sees it: its width W in bits and the
bit masks of the bits that Razor protects. One home for these facts, from
the timing model to the report.

Bits are numbered from the LSB (bit 0) to the MSB (bit W - 1); a mask is a
non-negative int whose bit b is set when accumulator bit b is protected.
"""
from __future__ import annotations

from typing import List

from .checks import integer

MIN_BITS, MAX_BITS = 8, 32  # accumulator widths the op supports, bits


def check_width(acc_bits, name: str = "acc_bits") -> int:
    """The accumulator width as an int in [8, 32] bits."""
    try:
        return integer(acc_bits, name, MIN_BITS, MAX_BITS)
    except (TypeError, ValueError):
        raise ValueError(f"{name} (the accumulator width) must be an integer between {MIN_BITS} "
                         f"and {MAX_BITS} bits, got {acc_bits!r}") from None


def full_mask(acc_bits: int) -> int:
    """Every bit of a W-bit accumulator."""
    return (1 << acc_bits) - 1


def msb_mask(k: int, acc_bits: int) -> int:
    """The k most significant bits of a W-bit accumulator (0 <= k <= W)."""
    k = integer(k, "the number of protected MSBs", 0, acc_bits)
    return full_mask(acc_bits) ^ full_mask(acc_bits - k)


def check_mask(mask, acc_bits: int, name: str = "protect") -> int:
    """A protect mask as an int with no bit outside the W-bit accumulator."""
    mask = integer(mask, name)
    if mask < 0 or mask >> acc_bits:
        raise ValueError(f"{name} mask {mask:#x} has bits outside the {acc_bits}-bit accumulator "
                         f"(allowed: 0 to {full_mask(acc_bits):#x})")
    return mask


def mask_bits(mask: int) -> List[int]:
    """The bit numbers set in a mask, ascending."""
    return [b for b in range(mask.bit_length()) if mask >> b & 1]


def describe_mask(mask: int) -> str:
    """'none', a range '28-31', or a list '1,24'."""
    bits = mask_bits(mask)
    if not bits:
        return "none"
    if bits == list(range(bits[0], bits[-1] + 1)):
        return f"{bits[0]}-{bits[-1]}" if len(bits) > 1 else str(bits[0])
    return ",".join(map(str, bits))
