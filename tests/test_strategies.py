"""Protection strategies and the bit ranking of the automatic search."""
import pytest
import torch

from pyvs.strategies import bit_ranking, on_error, parse_strategy


def test_strategies():
    assert parse_strategy("none", 32) == 0
    assert parse_strategy("all", 16) == 0xFFFF
    assert parse_strategy("msb8", 32) == 0xFF000000
    assert parse_strategy("0x00f0", 32) == 0xF0
    assert parse_strategy("auto", 32) is None
    # TE-Drop variants: the same mask, errors dropped instead of replayed.
    assert parse_strategy("auto-drop", 32) is None and parse_strategy("msb2-drop", 32) == 0xC0000000
    assert parse_strategy("0x0f-drop", 8) == 0x0F and parse_strategy("all-drop", 8) == 0xFF
    assert [on_error(s) for s in ("auto", "auto-drop", "msb2-drop", "none")] == ["replay", "drop", "drop", "replay"]
    for bad, match in [("magic", "unknown strategy"), ("msb40", "at most 32"),
                       ("0x1ffffffff", "wider than"), ("0xzz", "not a hexadecimal"),
                       ("none-drop", "needs protected bits"), ("-drop", "needs protected bits"),
                       ("auto-drop-drop", "needs protected bits"), ("msb40-drop", "at most 32")]:
        with pytest.raises(ValueError, match=match):
            parse_strategy(bad, 32)


def test_bit_ranking():
    p = torch.zeros(32, dtype=torch.float64)
    p[3], p[20], p[25] = 0.5, 1e-6, 1e-3
    assert bit_ranking(p) == [25, 3, 20]  # 1e-3*2^25 > 0.5*2^3 > 1e-6*2^20
