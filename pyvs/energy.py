"""Energy of one inference on the systolic array versus supply voltage, at a
fixed clock, with Razor protection and replays.

E(V, mask) = MACs * e_mac(V) * (1 + r * n)          dynamic, the MACs done
           + P_leak(V) * (1 + r * n) * t            leakage of all R*C PEs
           + hops * e_hop(V)                        data moved between PEs
           + replays * e_mac(V)                     each replay redoes a MAC
with n the number of protected accumulator bits, r the Razor cost of one
protected bit as a fraction of a PE's energy, t = (base + stall cycles) / f
(stalls: see :mod:`pyvs.latency`; errors of one cycle share one stall, but
each corrected error still redoes its MAC).

- e_mac(V) = e_mac_nom * (V / V_nom)^2 (V_nom: the array's nominal supply,
  :class:`pyvs.hardware.ArrayConfig`; dynamic energy C V^2 per switching
  event; the activity is folded into e_mac_nom, an average per MAC).
- hops: bits moved from a PE to its neighbour per inference
  (:func:`gemm_bit_hops`), which the dataflow decides: weight-stationary,
  every MAC passes its activation (8 bits) on and its partial sum (W bits)
  down, and every tile loads R x C weights through the columns;
  output-stationary, every MAC passes its activation and its weight (8 + 8
  bits) on, and every tile shifts its R x C outputs (W bits) out. e_hop(V)
  = e_bit_hop * (V / V_nom)^2.
- P_leak(V) = P_leak_nom * (V / V_nom) * exp(-eta (V_nom - V) / (n_sub * kT/q)):
  subthreshold leakage current falls exponentially with V through DIBL
  (eta = DIBL coefficient), times V for power.
- The array only: SRAM, DRAM and control are out of scope, since their
  voltage is not scaled here. Every inference pays for every cycle of the
  whole R x C array, busy or idle (leakage), unless idle PEs are power-gated
  (``power_gating``: the fraction of an idle PE's leakage gating removes;
  0 by default, an ungated array). The utilization matters: MobileNetV2
  keeps a 256 x 256 array about 1 % busy (301 M MACs in 445 k cycles of
  65 536 PEs), so without gating leakage is about 92 % of its energy at
  0.9 V and the energy saving of a lower supply is set mostly by the
  leakage model, not by C V^2.

Every parameter is in :class:`EnergyParams`, with its source. They are NOT
tuned to the paper's 79.4 %: the README reports what this model gives.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

from .accumulator import MAX_BITS
from .checks import integer, number
from .hardware import ArrayConfig


@dataclasses.dataclass(frozen=True)
class EnergyParams:
    """Energies at the array's nominal supply (ArrayConfig.v_nominal) and how
    they scale with the supply.

    Attributes:
        e_mac_nom: dynamic energy of one 8-bit MAC with 32-bit accumulation
            at V_nom, joules: 0.2 pJ (8-bit multiply) + 0.1 pJ (32-bit add)
            in 45 nm at 0.9 V (M. Horowitz, ISSCC 2014, "Computing's energy
            problem"), 0.3 pJ; the register energy of the PE is included in
            these per-operation figures only roughly.
        leak_per_pe_cycle: a PE's leakage energy per clock cycle at V_nom, as
            a fraction of e_mac_nom: 0.25 (28-45 nm logic at nominal supply
            spends roughly 20-30 % of its power in leakage when busy).
        dibl: DIBL coefficient eta, V/V (0.1: 100 mV/V, typical of 28-45 nm).
        n_sub: subthreshold slope factor (1.5).
        kt_q: thermal voltage at 300 K, volts (0.02585).
        razor_bit_fraction: extra energy of one Razor-protected accumulator
            bit per PE (shadow latch, XOR comparator, share of the error OR
            tree), as a fraction of the PE's energy, dynamic and leakage:
            0.01. A PE has about 48 flip-flops (8 + 8 operand, 32 accumulator)
            plus the MAC; a Razor flip-flop adds about one latch and one XOR
            to a flip-flop (Ernst et al., MICRO 2003, report a few per cent of
            total power for a whole Razor pipeline).
        power_gating: the fraction of an idle PE-cycle's leakage that power
            gating removes, 0..1 (0: no gating, the default; fine-grained
            gating of idle PEs removes most of it, e.g. 0.9). Busy PE-cycles
            (one per MAC) always leak; stall cycles count as idle.
        e_bit_hop: energy of moving one bit from a PE to its neighbour at
            V_nom, joules: 6 fJ, a register bit (2-3 fJ per clocked
            flip-flop bit in 28-45 nm) plus a PE pitch of wire (about
            0.1 pJ per bit per mm, Horowitz ISSCC 2014, over the 35 um
            pitch of a 256 x 256 array in TPU v1's ~80 mm^2). An estimate
            to a factor of two; it sets how much the dataflow's data
            movement weighs (0 leaves only MACs and leakage).
        supply_decap_f: decoupling capacitance of the array's supply,
            farads, charged or discharged at each change of voltage between
            layers (per-layer schedules): 80 nF, a tenth of TPU v1's
            ~80 mm^2 matrix unit as MOS decap at ~10 nF/mm^2 (thin-oxide
            capacitance, 28-45 nm). A change from V_a to V_b costs
            supply_decap_f * |V_b^2 - V_a^2| / 2 (regulator losses not
            counted): a fraction of a nJ for tens of mV, against mJ per
            image, so this estimate hardly matters; the switching time
            (ArrayConfig.dvfs_switch_ns) does.
    """

    e_mac_nom: float = 0.3e-12
    leak_per_pe_cycle: float = 0.25
    dibl: float = 0.1
    n_sub: float = 1.5
    kt_q: float = 0.02585
    razor_bit_fraction: float = 0.01
    power_gating: float = 0.0
    e_bit_hop: float = 6e-15
    supply_decap_f: float = 80e-9

    def __post_init__(self):
        for f in dataclasses.fields(self):
            number(getattr(self, f.name), f"EnergyParams.{f.name}", minimum=0.0,
                   positive=f.name in ("n_sub", "kt_q"), maximum=1.0 if f.name == "power_gating" else None)

    def e_mac(self, volts: float, array: ArrayConfig) -> float:
        """Dynamic energy of one MAC at ``volts``, joules."""
        return self.e_mac_nom * (volts / array.v_nominal) ** 2

    def leak_scale(self, volts: float, array: ArrayConfig) -> float:
        """P_leak(V) / P_leak(V_nom)."""
        return (volts / array.v_nominal) * math.exp(
            -self.dibl * (array.v_nominal - volts) / (self.n_sub * self.kt_q))

    def switch_j(self, v_from: float, v_to: float) -> float:
        """Energy of one change of the supply from ``v_from`` to ``v_to`` (V),
        joules: the decoupling capacitance's charge moved."""
        return self.supply_decap_f * abs(v_to ** 2 - v_from ** 2) / 2

    def leak_power_array(self, volts: float, array: ArrayConfig) -> float:
        """Leakage power of the whole R x C array at ``volts``, watts."""
        per_pe = self.leak_per_pe_cycle * self.e_mac_nom * array.freq_ghz * 1e9
        return array.rows * array.cols * per_pe * self.leak_scale(volts, array)


def gemm_bit_hops(M: int, K: int, N: int, groups: int, array: ArrayConfig, acc_bits: int) -> float:
    """Bits moved between neighbouring PEs by one GEMM ([M, K] x [K, N] per
    group): per MAC 8 + W ('ws': its activation on along the row, its
    partial sum down the column) or 8 + 8 ('os': its activation on, its
    weight down); and the words that enter or leave the PEs through the
    columns, each shifted past half the rows it uses on average: 'ws' loads
    every weight once (G * K * N bytes over (min(K, R) + 1) / 2 hops), 'os'
    shifts every output out once (G * M * N W-bit words over
    (min(M, R) + 1) / 2 hops)."""
    macs = groups * M * K * N
    R = array.rows
    if array.dataflow == "ws":
        return macs * (8 + acc_bits) + groups * K * N * 8 * (min(K, R) + 1) / 2
    return macs * 16 + groups * M * N * acc_bits * (min(M, R) + 1) / 2


def inference_energy(volts: float, macs: float, base_cycles: float, protected_bits: int = 0,
                     replays: float = 0.0, params: EnergyParams = EnergyParams(),
                     array: ArrayConfig = ArrayConfig(), stall_cycles: Optional[float] = None,
                     bit_hops: float = 0.0) -> dict:
    """Energy of one inference, joules, by component.

    Args: volts (V); macs (MACs per inference); base_cycles (cycles without
    replays); protected_bits (Razor-protected accumulator bits, 0..32);
    replays (corrected errors per inference); stall_cycles (cycles the array
    is held for them; default one stall of ``array.replay_cycles`` per
    error, the upper bound); bit_hops (bits moved between PEs per inference,
    :func:`gemm_bit_hops`). Returns a dict: dynamic, leakage, movement,
    replay, razor (the part of dynamic and leakage due to protection),
    total (J), and cycles."""
    number(volts, "volts", positive=True)
    integer(protected_bits, "protected_bits", 0, MAX_BITS)
    razor = params.razor_bit_fraction * protected_bits
    cycles = base_cycles + (replays * array.replay_cycles if stall_cycles is None else stall_cycles)
    dyn = macs * params.e_mac(volts, array)
    leak = params.leak_power_array(volts, array) * cycles / (array.freq_ghz * 1e9)
    if params.power_gating:  # idle PE-cycles leak (1 - g) of a busy one
        pe_cycles = array.rows * array.cols * cycles
        leak *= 1.0 - params.power_gating * max(0.0, 1.0 - macs / pe_cycles) if pe_cycles else 1.0
    replay = replays * params.e_mac(volts, array)
    movement = bit_hops * params.e_bit_hop * (volts / array.v_nominal) ** 2
    return {
        "dynamic": dyn * (1 + razor),
        "leakage": leak * (1 + razor),
        "movement": movement,
        "replay": replay,
        "razor": (dyn + leak) * razor,
        "total": (dyn + leak) * (1 + razor) + movement + replay,
        "cycles": cycles,
    }
