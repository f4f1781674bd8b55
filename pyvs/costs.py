"""What one inference costs the simulated array: latency and energy of a
workload (a model's GEMM shapes) at a voltage, with a protect mask and the
Razor replays an evaluation measured. Joins the latency model
(:mod:`pyvs.latency`) and the energy model (:mod:`pyvs.energy`); used by
every experiment, and to rescore finished ones under other models."""
from __future__ import annotations

import dataclasses
import functools
from typing import Dict

from .energy import EnergyParams, gemm_bit_hops, inference_energy
from .hardware import ACC_BITS, ArrayConfig
from .latency import latency_overhead, model_cycles

GemmShapes = Dict[str, tuple]  # layer name -> (groups, GEMM rows per image, K, N per group)


@dataclasses.dataclass(frozen=True)
class Costs:
    """One inference at one operating point: latency_overhead (stall cycles
    / base cycles, a fraction; errors of one cycle share its stall, see
    :mod:`pyvs.latency`), latency_overhead_bound (one stall per error),
    energy_j and its parts (J: dynamic, leakage, Razor, replays, data
    movement between PEs), energy_saving (1 - energy / energy at the
    nominal voltage without protection)."""

    latency_overhead: float
    latency_overhead_bound: float
    energy_j: float
    energy_saving: float
    energy_dynamic_j: float
    energy_leakage_j: float
    energy_razor_j: float
    energy_replay_j: float
    energy_movement_j: float = 0.0


@dataclasses.dataclass(frozen=True)
class Workload:
    """One inference of a model on the array: its GEMM shapes, the array and
    the energy model."""

    shapes: GemmShapes
    array: ArrayConfig = ArrayConfig()
    energy: EnergyParams = EnergyParams()
    acc_bits: int = ACC_BITS

    @functools.cached_property
    def base_cycles(self) -> Dict[str, float]:
        """Cycles per layer per image without replays."""
        return model_cycles(self.shapes, self.array)

    @functools.cached_property
    def cycles(self) -> float:
        """Cycles per image without replays."""
        return sum(self.base_cycles.values())

    @functools.cached_property
    def macs_by_layer(self) -> Dict[str, int]:
        """MACs per layer per image, in the model's order."""
        return {n: G * M * K * N for n, (G, M, K, N) in self.shapes.items()}

    @functools.cached_property
    def macs(self) -> int:
        """MACs per image."""
        return sum(self.macs_by_layer.values())

    @functools.cached_property
    def bit_hops(self) -> float:
        """Bits moved between neighbouring PEs per image (the dataflow's data
        movement, :func:`pyvs.energy.gemm_bit_hops`)."""
        b = self.array.batch
        return sum(gemm_bit_hops(M * b, K, N, G, self.array, self.acc_bits) / b
                   for G, M, K, N in self.shapes.values())

    @functools.cached_property
    def utilization(self) -> float:
        """Busy PE-cycles over all PE-cycles of an inference (one MAC keeps
        one PE busy for one cycle), a fraction."""
        pe_cycles = self.array.rows * self.array.cols * self.cycles
        return self.macs / pe_cycles if pe_cycles else 0.0

    @functools.cached_property
    def baseline(self) -> Dict[str, float]:
        """Energy per image at the nominal voltage, without protection or
        replays, J: dynamic, leakage and total."""
        e = inference_energy(self.array.v_nominal, self.macs, self.cycles, 0, 0.0, self.energy, self.array,
                             bit_hops=self.bit_hops)
        return {"dynamic_j": e["dynamic"], "leakage_j": e["leakage"], "movement_j": e["movement"],
                "total_j": e["total"]}

    @functools.cached_property
    def baseline_j(self) -> float:
        """Energy per image at the nominal voltage, without protection or replays, J."""
        return self.baseline["total_j"]

    def costs(self, volts: float, protected_bits: int, replays_by_layer: Dict[str, float]) -> Costs:
        """At ``volts`` (V) with ``protected_bits`` Razor bits and
        ``replays_by_layer`` corrected errors per image per layer (the
        stalls they cost depend on how they spread over the layers)."""
        _, overhead = latency_overhead(self.base_cycles, replays_by_layer, self.array)
        _, bound = latency_overhead(self.base_cycles, replays_by_layer, self.array, coalesce=False)
        replays = sum(replays_by_layer.values())
        e = inference_energy(volts, self.macs, self.cycles, protected_bits, replays, self.energy,
                             self.array, stall_cycles=overhead * self.cycles, bit_hops=self.bit_hops)
        return Costs(latency_overhead=overhead, latency_overhead_bound=bound, energy_j=e["total"],
                     energy_saving=1.0 - e["total"] / self.baseline_j,
                     energy_dynamic_j=e["dynamic"], energy_leakage_j=e["leakage"],
                     energy_razor_j=e["razor"], energy_replay_j=e["replay"], energy_movement_j=e["movement"])
