"""One experiment: a converted model, its data, the simulated array and
the timing model; the golden (fault-free) run once, then for each fault
setting (per-bit probabilities at a voltage, protect mask, seed) one
evaluation, turned into a :class:`pyvs.results.PointResult` with its
latency and energy. Used by ``pyvs run`` (one point), the sweep (a grid)
and the slack study.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
    (this module joins an evaluation to the hardware's costs)
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import torch

from .costs import Workload
from .data import normalize
from .dataflow import calibration_images, layer_timing
from .distributed import World
from .energy import EnergyParams
from .evaluate import Accuracy, Counts, Evaluation, Golden, evaluate
from .hardware import ON_ERRORS, ArrayConfig
from .nn.config import FaultConfig
from .nn.layers import layer_kinds, model_width, set_faults, systolic_layers
from .nn.probe import forward_pass
from .results import PointResult
from .schedule import Schedule, mean_voltage
from .timing import ErrorTable, LayerTiming, TimingSpec

# Per-bit error probabilities, float64 [W]: one table for every layer, or
# one per layer (name -> table), as the event-driven model gives them.
Rates = Union[torch.Tensor, Dict[str, torch.Tensor]]


def per_bit_max(p_bits: Rates) -> torch.Tensor:
    """The largest rate of each bit over the layers, float64 [W]."""
    if isinstance(p_bits, torch.Tensor):
        return p_bits
    return torch.stack(list(p_bits.values())).max(0).values


class Experiment:
    """A converted model (eval mode) on ``batches`` (a list of (images
    [B, 3, H, W], uint8 pixels or float model input, int64 labels [B]), in
    order) on the simulated ``array``, with ``energy`` and ``timing``
    models, on ``device``.

    golden: a cached golden run (e.g. a resumed sweep's); else it is run
    when first needed. world, first_image: under torchrun, ``batches`` are
    this rank's shard of the data set, starting at global image
    ``first_image`` (:mod:`pyvs.distributed`); results are those of the
    whole data set.
    """

    def __init__(self, model: torch.nn.Module, batches: list, *, array: ArrayConfig = ArrayConfig(),
                 energy: EnergyParams = EnergyParams(), timing: TimingSpec = TimingSpec(),
                 device: str = "cpu", progress: bool = True, golden: Optional[Golden] = None,
                 world: World = World(), first_image: int = 0):
        for value, kind, name in ((array, ArrayConfig, "array"), (energy, EnergyParams, "energy"),
                                  (timing, TimingSpec, "timing")):
            if not isinstance(value, kind):
                raise TypeError(f"Experiment: {name} must be a {kind.__name__}, got {type(value).__name__}")
        self.model, self.batches, self.array, self.energy, self.timing = model, batches, array, energy, timing
        self.device, self.progress, self.world, self.first_image = device, progress, world, first_image
        self.acc_bits = model_width(model)
        self.n_images = sum(world.gather(sum(len(y) for _, y in batches)))
        self._golden, self._workload = golden, None
        self._layer_timing: Optional[LayerTiming] = None
        self._joint: Dict[float, Dict[str, Tuple[torch.Tensor, torch.Tensor]]] = {}
        # Masks that agree on the bits that can err give the same events and
        # the same outputs: each (voltage, seed, effective mask) is evaluated once.
        self._done: Dict[tuple, Tuple[Accuracy, Counts, float]] = {}
        self.evaluations = 0  # faulty evaluations run so far

    def with_timing(self, timing: TimingSpec) -> "Experiment":
        """The same model, data, array and golden run under another timing
        spec; captured operands are shared when only the guard-band differs
        (the simulated waveforms do not depend on it)."""
        other = Experiment(self.model, self.batches, array=self.array, energy=self.energy, timing=timing,
                           device=self.device, progress=self.progress, golden=self._golden, world=self.world,
                           first_image=self.first_image)
        if self.timing.with_tech(guard_band=timing.tech.guard_band) == timing:
            other._layer_timing = self._layer_timing
        return other

    def on_images(self, batches: list, first_image: int) -> "Experiment":
        """The same model, array, energy and timing, and the same per-layer
        tables (captured from this experiment's images), on other images
        (``batches``, starting at global image ``first_image``): what the
        joint search reports on."""
        other = Experiment(self.model, batches, array=self.array, energy=self.energy, timing=self.timing,
                           device=self.device, progress=self.progress, world=self.world, first_image=first_image)
        if self.timing.needs_operands:
            other._layer_timing = self.layer_timing()
        return other

    def remember(self, row: PointResult) -> None:
        """Takes a finished point's outcome (a row this experiment made, e.g.
        read back from a folder) as evaluated, so that it is not run again."""
        where = row.schedule or row.voltage
        p = self.schedule_rates(row.schedule) if row.schedule else self.error_table([row.voltage]).rates(row.voltage)
        key = self.key(tuple(where.items()) if row.schedule else where, p, row.mask, row.seed, row.on_error)
        self._done.setdefault(key, (row.accuracy, row.counts, row.seconds))

    @property
    def golden(self) -> Golden:
        if self._golden is None:
            self._golden = self.run_golden()
        return self._golden

    @property
    def workload(self) -> Workload:
        if self._workload is None:
            self._workload = Workload(self.golden.shapes, self.array, self.energy, self.acc_bits)
        return self._workload

    def key(self, volts: float, p_bits: Rates, mask: int, seed: int, on_error: str = "replay") -> tuple:
        """What decides a point's outcome: two points with the same key give
        the same outputs and counts (dropping and replaying differ only where
        a protected bit can err)."""
        erring = sum(1 << b for b in range(self.acc_bits) if float(per_bit_max(p_bits)[b]) > 0)
        return (volts, seed, mask & erring, on_error if mask & erring else "replay")

    def expected_events(self, p_bits: Rates) -> torch.Tensor:
        """Timing errors per image per accumulator bit, float64 [W]: the
        rates times every layer's MACs (what ranks the bits to protect)."""
        if isinstance(p_bits, torch.Tensor):
            return p_bits * self.workload.macs
        return sum(p_bits[n] * macs for n, macs in self.workload.macs_by_layer.items() if n in p_bits)

    def layer_timing(self) -> LayerTiming:
        """The timing spec's per-layer histograms on operand pairs captured
        from the data set's first ``timing.calibration_images`` images
        (every rank computes the same); computed once."""
        if self._layer_timing is None:
            images = calibration_images(self.batches, self.timing.calibration_images, self.world, self.first_image)
            if len(images) < 2:
                raise ValueError(f"the timing model {self.timing.model!r} needs at least 2 images to capture "
                                 "operand pairs; use --timing-model event-uniform or static-uniform for one image")
            self._layer_timing = layer_timing(self.model, images, self.timing, self.device, self.array.rows,
                                              progress=self.progress, dataflow=self.array.dataflow)
        return self._layer_timing

    def error_table(self, voltages) -> ErrorTable:
        """The timing spec's :class:`pyvs.timing.ErrorTable` at ``voltages``
        (V) on this experiment's array."""
        if self.timing.needs_operands:
            return self.timing.table(voltages, self.array, self.acc_bits, self.layer_timing(),
                                     self.workload.macs_by_layer, guard_band=self.timing.tech.guard_band)
        return self.timing.table(voltages, self.array, self.acc_bits)

    def evaluated_keys(self) -> set:
        return set(self._done)

    def _evaluate(self, golden, desc: str) -> Evaluation:
        return evaluate(self.model, self.batches, golden=golden, device=self.device, desc=desc,
                        progress=self.progress, acc_bits=self.acc_bits, world=self.world,
                        first_image=self.first_image)

    def run_golden(self) -> Golden:
        set_faults(self.model, None)
        if self.batches:
            warm_up(self.model, self.batches[0][0], self.device)
        ev = self._evaluate(None, "golden run")
        # Layers in the model's order, whatever order they ran in.
        shapes = {n: ev.shapes[n] for n, _ in systolic_layers(self.model) if n in ev.shapes}
        return Golden(ev.pred, ev.accuracy(), ev.seconds, shapes)

    @property
    def kinds(self) -> Dict[str, str]:
        """{layer name: kind} (:func:`pyvs.nn.layers.layer_kinds`), the model's order."""
        return layer_kinds(self.model)

    def point(self, volts: Union[float, Schedule], p_bits: Rates, mask: int, seed: int, strategy: str,
              on_error: str = "replay") -> PointResult:
        """The result at per-bit probabilities ``p_bits`` (float64 [W] for
        every layer, or {layer name: float64 [W]}: those of ``volts``, V, or
        of a per-layer schedule {layer name: V}, see :meth:`schedule_point`)
        with the ``mask`` bits protected; ``on_error``: what a detected error
        does, 'replay' (a stall) or 'drop' (TE-Drop: the MAC's update is
        lost, no stall)."""
        if on_error not in ON_ERRORS:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERRORS)}, got {on_error!r}")
        schedule = dict(volts) if isinstance(volts, dict) else {}
        where = tuple(schedule.items()) if schedule else volts
        key = self.key(where, p_bits, mask, seed, on_error)
        if key not in self._done:
            desc = f"{'schedule' if schedule else f'{volts:.3f} V'} {strategy} {mask:#x}"
            self._done[key] = self._measure(p_bits, mask, seed, desc, on_error, volts)
        accuracy, counts, seconds = self._done[key]
        bits = bin(mask).count("1")
        replays = counts.corrected_per_layer if on_error == "replay" else {}
        voltage = mean_voltage(schedule, self.workload.macs_by_layer) if schedule else volts
        return PointResult(voltage=voltage, strategy=strategy, seed=seed, protect=f"{mask:#010x}",
                           protected_bits=bits, accuracy=accuracy, counts=counts,
                           costs=self.workload.costs(schedule or volts, bits, replays),
                           max_p=float(per_bit_max(p_bits).max()), evaluations=1, seconds=seconds,
                           on_error=on_error, schedule=schedule, dataflow=self.array.dataflow)

    def schedule_rates(self, schedule: Schedule) -> Dict[str, torch.Tensor]:
        """Each layer's per-bit rates at its own voltage of ``schedule``
        ({layer name: V}, every systolic layer)."""
        self.timing.check_voltages(sorted(set(schedule.values())), self.array)
        return self.error_table(sorted(set(schedule.values()))).schedule_rates(schedule)

    def schedule_point(self, schedule: Schedule, mask: int, seed: int, strategy: str,
                       on_error: str = "replay") -> PointResult:
        """The result with every layer at its own supply (``schedule``:
        {layer name: V} for every systolic layer, :func:`pyvs.schedule.resolve`);
        latency and energy count the changes of supply."""
        layers = [n for n, _ in systolic_layers(self.model)]
        if sorted(schedule) != sorted(layers):
            raise ValueError("the schedule must give every systolic layer a voltage "
                             f"(missing {sorted(set(layers) - set(schedule))[:3]}, "
                             f"unknown {sorted(set(schedule) - set(layers))[:3]})")
        schedule = {n: float(schedule[n]) for n in layers}
        return self.point(schedule, self.schedule_rates(schedule), mask, seed, strategy, on_error)

    def joint_tables(self, volts: Union[float, Schedule]) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
        """Conditioned injection's tables of every layer with captured pairs
        ({layer: (patterns, joint)}) at ``volts`` (V, or a schedule {layer:
        V}); remembered per voltage."""
        layer_volts = volts if isinstance(volts, dict) else None
        wanted = sorted(set(layer_volts.values())) if layer_volts else [float(volts)]
        for v in wanted:
            if v not in self._joint:
                self._joint[v] = self.layer_timing().joint_tables(v, self.array, self.timing.tech.guard_band,
                                                                  progress=self.progress)
        if layer_volts is None:
            return self._joint[float(volts)]
        return {n: self._joint[v][n] for n, v in layer_volts.items() if n in self._joint[v]}

    def _measure(self, p_bits: Rates, mask: int, seed: int, desc: str,
                 on_error: str = "replay", volts: Union[float, Schedule, None] = None
                 ) -> Tuple[Accuracy, Counts, float]:
        if not bool((per_bit_max(p_bits) > 0).any()):
            # No bit can err: no event is drawn at all, the run IS the golden run.
            return self.golden.accuracy, Counts.none(self.acc_bits), 0.0
        joint = self.joint_tables(volts) if self.timing.injection == "conditioned" else {}

        def config(p, name=None):
            patterns, table = joint.get(name, (None, None))
            return FaultConfig(p, protect=mask, seed=seed, rows=self.array.rows, dataflow=self.array.dataflow,
                               on_error=on_error, patterns=patterns, joint=table)
        golden = self.golden
        set_faults(self.model, config(p_bits) if isinstance(p_bits, torch.Tensor)
                   else {name: config(p, name) for name, p in p_bits.items()})
        self.evaluations += 1
        try:
            ev = self._evaluate(golden.pred, desc)
        finally:
            set_faults(self.model, None)
        return ev.accuracy(golden.top1), ev.counts_of(self.n_images), ev.seconds


@torch.no_grad()
def warm_up(model: torch.nn.Module, images: torch.Tensor, device: str) -> None:
    """One untimed forward pass, so that first-call costs (allocations,
    thread pools, GPU handles) are not charged to the first timed run."""
    with forward_pass(0):
        model(normalize(images.to(device)))


__all__ = ["Experiment", "Rates", "per_bit_max", "warm_up"]
