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


def conditioned_regime(name, W=W32):
    """Conditioned injection's tables (patterns int64 [P], joint float64
    [W + 1, P]) and a protect mask for each test regime."""
    gen = torch.Generator().manual_seed(hash((name, W)) % 2**31)
    if name == "zero":
        return torch.tensor([1 << (W - 1)]), torch.zeros(W + 1, 1, dtype=torch.float64), 0
    if name == "rare":  # the top bits, jointly, on long runs only
        pats = torch.tensor([1 << (W - 1), 3 << (W - 2), 7 << (W - 3)])
        joint = torch.zeros(W + 1, 3, dtype=torch.float64)
        joint[W // 2:] = torch.tensor([1e-3, 2e-4, 1e-5], dtype=torch.float64)
        return pats, joint, 0
    if name == "heavy":  # any bits, every signature, some protected
        pats = torch.randint(1, 1 << W, (6,), generator=gen, dtype=torch.int64)
        joint = torch.rand(W + 1, 6, generator=gen, dtype=torch.float64) * 0.08
        return pats, joint, 0x0F00F0F0 & ((1 << W) - 1)
    if name == "certain":  # some signatures always err (rows that sum to 1)
        pats = torch.tensor([1 << (W - 1), (1 << 5) | 1])
        joint = torch.zeros(W + 1, 2, dtype=torch.float64)
        joint[0] = torch.tensor([0.5, 0.5], dtype=torch.float64)
        joint[W] = torch.tensor([1.0, 0.0], dtype=torch.float64)
        joint[3] = torch.tensor([0.1, 0.0], dtype=torch.float64)
        return pats, joint, 1 << (W - 1)
    raise KeyError(name)
