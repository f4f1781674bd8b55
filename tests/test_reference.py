"""The reference's building blocks, checked independently: Philox against
the Random123 known answers, the host tables against the C++ ones and
against closed forms of the geometric law."""
import math

import pytest
import torch

import pyvs  # noqa: F401  (registers torch.ops.pyvs)
from pyvs import reference as R

from opdata import p_regime


# ---- the generator ---------------------------------------------------------

def test_philox_known_answers():
    # Known-answer vectors of Philox4x32-10 from the Random123 distribution
    # (kat_vectors), an implementation independent of ours.
    kat = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for ctr, key, expected in kat:
        got = tuple(int(x) for x in R.philox4x32_10(*ctr, *key))
        assert got == expected


@pytest.mark.parametrize("regime", ["zero", "tiny", "large", "mixed"])
@pytest.mark.parametrize("K", [0, 1, 17, 600])
def test_tables_match_reference(regime, K):
    p, _ = p_regime(regime)
    packed = torch.ops.pyvs._fault_tables(torch.tensor(p, dtype=torch.float64), K)
    gap, first, nxt, _ = R.fault_tables(p, K)
    assert torch.equal(packed, torch.cat([gap, first, nxt.flatten()]))


def test_tables_follow_the_geometric_law():
    # Independent of the iteration in fault_tables: closed forms with log1p/expm1.
    p = [1e-4] * 8 + [0.05] + [0.0] * 7
    q = -math.expm1(sum(math.log1p(-x) for x in p))
    gap, first, nxt, any_event = R.fault_tables(p, 1000)
    assert any_event
    for g in (1, 10, 999, 1000):
        expected = -math.expm1(g * math.log1p(-q)) * R.ONE
        assert abs(int(gap[g]) - expected) <= 1e-9 * expected
    # P(lowest erring bit <= 8 | any) = 1 exactly: bits above 8 never err.
    assert int(first[8]) == R.ONE and int(first[0]) < R.ONE
    # P(some bit in (j, b] errs): nothing above bit 8 ever errs.
    assert int(nxt[8].max()) == 0 and int(nxt[0, 7]) < int(nxt[0, 8]) == int(nxt[0, 15])
    expected = (1 - (1 - 1e-4) ** 7 * 0.95) * R.ONE
    assert abs(int(nxt[0, 8]) - expected) <= 1e-12 * expected
