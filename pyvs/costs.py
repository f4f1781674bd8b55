"""What one inference costs the simulated array: latency and energy of a
workload (a model's GEMM shapes) at a voltage, with a protect mask and the
Razor replays an evaluation measured. Joins the latency model
(:mod:`pyvs.latency`) and the energy model (:mod:`pyvs.energy`); used by
every experiment, and to rescore finished ones under other models."""
from __future__ import annotations

import dataclasses
import functools
from typing import Dict, Union

from .energy import EnergyParams, gemm_bit_hops, inference_energy
from .hardware import ACC_BITS, ArrayConfig
from .latency import latency_overhead, model_cycles, stall_cycles
from .schedule import Schedule, transitions

GemmShapes = Dict[str, tuple]  # layer name -> (groups, GEMM rows per image, K, N per group)


@dataclasses.dataclass(frozen=True)
class Costs:
    """One inference at one operating point: latency_overhead (stall cycles
    / base cycles, a fraction; errors of one cycle share its stall, see
    :mod:`pyvs.latency`), latency_overhead_bound (one stall per error),
    energy_j and its parts (J: dynamic, leakage, Razor, replays, data
    movement between PEs, changes of supply), energy_saving (1 - energy /
    energy at the nominal voltage without protection); for a per-layer
    schedule (:mod:`pyvs.schedule`), switch_overhead, the part of
    latency_overhead spent waiting for the supply (a fraction), and
    switches, the changes of supply per image."""

    latency_overhead: float
    latency_overhead_bound: float
    energy_j: float
    energy_saving: float
    energy_dynamic_j: float
    energy_leakage_j: float
    energy_razor_j: float
    energy_replay_j: float
    energy_movement_j: float = 0.0
    energy_switch_j: float = 0.0
    switch_overhead: float = 0.0
    switches: float = 0.0


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
    def bit_hops_by_layer(self) -> Dict[str, float]:
        """Bits moved between neighbouring PEs per image per layer (the
        dataflow's data movement, :func:`pyvs.energy.gemm_bit_hops`)."""
        b = self.array.batch
        return {n: gemm_bit_hops(M * b, K, N, G, self.array, self.acc_bits) / b
                for n, (G, M, K, N) in self.shapes.items()}

    @functools.cached_property
    def bit_hops(self) -> float:
        """Bits moved between neighbouring PEs per image."""
        return sum(self.bit_hops_by_layer.values())

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

    def costs(self, volts: Union[float, Schedule], protected_bits: int,
              replays_by_layer: Dict[str, float]) -> Costs:
        """At ``volts`` (V; or a per-layer schedule {layer: V}, every layer
        of the workload) with ``protected_bits`` Razor bits and
        ``replays_by_layer`` corrected errors per image per layer (the
        stalls they cost depend on how they spread over the layers)."""
        if isinstance(volts, dict):
            return self._schedule_costs(volts, protected_bits, replays_by_layer)
        _, overhead = latency_overhead(self.base_cycles, replays_by_layer, self.array)
        _, bound = latency_overhead(self.base_cycles, replays_by_layer, self.array, coalesce=False)
        replays = sum(replays_by_layer.values())
        e = inference_energy(volts, self.macs, self.cycles, protected_bits, replays, self.energy,
                             self.array, stall_cycles=overhead * self.cycles, bit_hops=self.bit_hops)
        return Costs(latency_overhead=overhead, latency_overhead_bound=bound, energy_j=e["total"],
                     energy_saving=1.0 - e["total"] / self.baseline_j,
                     energy_dynamic_j=e["dynamic"], energy_leakage_j=e["leakage"],
                     energy_razor_j=e["razor"], energy_replay_j=e["replay"], energy_movement_j=e["movement"])

    def _schedule_costs(self, schedule: Schedule, protected_bits: int,
                        replays_by_layer: Dict[str, float]) -> Costs:
        """Each layer at its own supply: its energy at its voltage (as
        :meth:`costs` computes a whole inference), plus every change of
        supply: the array waits ``array.dvfs_switch_ns`` (charged as idle
        cycles to the layer it enters) and the decoupling capacitance's
        charge moves. A batch of ``array.batch`` images shares the changes.
        With one voltage for all layers this is :meth:`costs` at it."""
        missing = [n for n in self.shapes if n not in schedule]
        extra = [n for n in schedule if n not in self.shapes]
        if missing or extra:
            raise ValueError(f"the schedule must give every layer of the workload a voltage "
                             f"(missing {missing[:3]}, unknown {extra[:3]})")
        schedule = {n: schedule[n] for n in self.shapes}  # the model's order decides the changes
        _, overhead = latency_overhead(self.base_cycles, replays_by_layer, self.array)
        _, bound = latency_overhead(self.base_cycles, replays_by_layer, self.array, coalesce=False)
        stalls = stall_cycles(self.base_cycles, replays_by_layer, self.array)
        changes = transitions(schedule)
        wait = self.array.dvfs_switch_ns * self.array.freq_ghz / self.array.batch  # cycles per change per image
        waits = {n: 0.0 for n in schedule}
        names = list(schedule)
        for i, n in enumerate(names):  # a change into layer n: the previous layer (cyclically) differs
            if schedule[names[i - 1]] != schedule[n]:
                waits[n] += wait
        parts = {"dynamic": 0.0, "leakage": 0.0, "movement": 0.0, "replay": 0.0, "razor": 0.0, "total": 0.0}
        for n, v in schedule.items():
            e = inference_energy(v, self.macs_by_layer[n], self.base_cycles[n], protected_bits,
                                 replays_by_layer.get(n, 0.0), self.energy, self.array,
                                 stall_cycles=stalls[n] + waits[n], bit_hops=self.bit_hops_by_layer[n])
            for k in parts:
                parts[k] += e[k]
        switch_j = sum(self.energy.switch_j(a, b) for a, b in changes) / self.array.batch
        total = parts["total"] + switch_j
        switch_overhead = sum(waits.values()) / self.cycles if self.cycles else 0.0
        return Costs(latency_overhead=overhead + switch_overhead, latency_overhead_bound=bound + switch_overhead,
                     energy_j=total, energy_saving=1.0 - total / self.baseline_j,
                     energy_dynamic_j=parts["dynamic"], energy_leakage_j=parts["leakage"],
                     energy_razor_j=parts["razor"], energy_replay_j=parts["replay"],
                     energy_movement_j=parts["movement"], energy_switch_j=switch_j,
                     switch_overhead=switch_overhead, switches=len(changes) / self.array.batch)
