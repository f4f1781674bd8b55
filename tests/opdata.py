"""Random operands and probability regimes shared by the op's tests."""
import torch

W32 = 32


def rand_int8(shape, gen, dtype=torch.int8):
    lo, hi = (0, 256) if dtype == torch.uint8 else (-128, 128)
    return torch.randint(lo, hi, shape, generator=gen, dtype=torch.int16).to(dtype)


def p_regime(name, W=W32):
    """Per-bit probabilities [W] and a protect mask for each test regime."""
    if name == "zero":
        return [0.0] * W, 0
    if name == "tiny":
        return [1e-7 * (1 + b) for b in range(W)], 0
    if name == "large":  # heavy errors on a few bits: nearly every output has events
        return [0.3 if b in (3, 17, W - 1) else 0.0 for b in range(W)], 0
    if name == "guarded":  # heavy errors, two of the three bits protected: TE-Drop drops often
        return [0.3 if b in (3, 17, W - 1) else 0.0 for b in range(W)], (1 << 17) | (1 << (W - 1))
    if name == "mixed":  # every bit in play, some protected
        return [1e-3 * 1.15 ** b for b in range(W)], 0x0F00F0F0 & ((1 << W) - 1)
    raise KeyError(name)
