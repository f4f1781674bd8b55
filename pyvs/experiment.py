"""One experiment point: a converted model, its data and the simulated
array; the golden (fault-free) run once, then for each fault setting
(per-bit probabilities at a voltage, protect mask, seed) one evaluation,
turned into a :class:`pyvs.results.PointResult` with its latency and
energy. Used by ``pyvs run`` (one point) and the sweep (a grid).

    voltage -> error table -> op -> layer -> model -> evaluation -> report
    (this module joins an evaluation to the hardware's costs)
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple, Union

import torch

from .checks import integer
from .costs import Workload
from .dataflow import LayerTiming, calibration_images as calibration_images_of
from .data import normalize
from .distributed import World
from .energy import EnergyParams
from .evaluate import Evaluation, evaluate
from .latency import ArrayConfig
from .nn.config import FaultConfig
from .nn.layers import model_width, set_faults, systolic_layers
from .nn.probe import forward_pass
from .results import PointResult
from .timing import DEFAULT_MODEL, TimingOptions, make_table, named_model


# Per-bit error probabilities, float64 [W]: one table for every layer, or
# one per layer (name -> table), as the event-driven model gives them.
Rates = Union[torch.Tensor, Dict[str, torch.Tensor]]


def per_bit_max(p_bits: Rates) -> torch.Tensor:
    """The largest rate of each bit over the layers, float64 [W]."""
    if isinstance(p_bits, torch.Tensor):
        return p_bits
    return torch.stack(list(p_bits.values())).max(0).values


@dataclasses.dataclass
class Golden:
    """The fault-free run: top-5 predictions int64 [N, 5], its accuracies
    (:meth:`pyvs.evaluate.Evaluation.accuracy`) and the GEMM shape of every
    layer (groups, rows per image, K, N per group)."""

    pred: torch.Tensor
    clean: dict
    shapes: Dict[str, tuple]


class Experiment:
    """A converted model (eval mode) on ``batches`` (a list of (images
    [B, 3, H, W], uint8 pixels or float model input, int64 labels [B]), in
    order) on the simulated array.

    golden: a cached golden run (e.g. a resumed sweep's), else it is run now.
    world, first_image: under torchrun, ``batches`` are this rank's shard of
    the data set, starting at global image ``first_image``
    (:mod:`pyvs.distributed`); results are those of the whole data set.
    """

    def __init__(self, model: torch.nn.Module, batches: list, *, array: ArrayConfig = ArrayConfig(),
                 energy: EnergyParams = EnergyParams(), device: str = "cpu", progress: bool = True,
                 golden: Optional[Golden] = None, world: World = World(), first_image: int = 0):
        self.model, self.batches, self.array = model, batches, array
        self.device, self.progress, self.world, self.first_image = device, progress, world, first_image
        self.acc_bits = model_width(model)
        self.n_images = sum(world.gather(sum(len(y) for _, y in batches)))
        self.golden = golden or self.run_golden()
        self.workload = Workload(self.golden.shapes, array, energy)
        # Masks that agree on the bits that can err give the same events and
        # the same outputs: each (voltage, seed, effective mask) is evaluated once.
        self._done: Dict[tuple, Tuple[dict, Optional[Dict[str, float]]]] = {}
        self.evaluations = 0  # faulty evaluations run so far

    def key(self, volts: float, p_bits: Rates, mask: int, seed: int) -> tuple:
        """What decides a point's outcome: two points with the same key give
        the same outputs and counts."""
        erring = sum(1 << b for b in range(self.acc_bits) if float(per_bit_max(p_bits)[b]) > 0)
        return (volts, seed, mask & erring)

    def expected_events(self, p_bits: Rates) -> torch.Tensor:
        """Timing errors per image per accumulator bit, float64 [W]: the
        rates times every layer's MACs (what ranks the bits to protect)."""
        if isinstance(p_bits, torch.Tensor):
            return p_bits * self.workload.macs
        return sum(p_bits[n] * macs for n, macs in self.workload.macs_by_layer.items() if n in p_bits)

    def error_table(self, voltages, freq_ghz: float, timing_model: str = DEFAULT_MODEL,
                    timing_options: Optional[dict] = None, calibration_images: int = 32,
                    pairs_per_layer: int = 4096):
        """The timing model's :class:`pyvs.timing.ErrorTable` for this
        experiment at ``voltages`` (V) and ``freq_ghz`` (GHz). The named
        ``timing_model`` 'event' captures operand pairs from the model on the
        data set's first ``calibration_images`` images (``pairs_per_layer``
        per layer; every rank computes the same table); the others do not
        look at the model."""
        kwargs = named_model(timing_model, dict(timing_options or {}))
        if timing_model != "event":
            return make_table(sorted(voltages), freq_ghz, self.acc_bits, **kwargs)
        options = TimingOptions.from_kwargs(kwargs)
        timing = self.layer_timing(options, calibration_images, pairs_per_layer)
        return timing.table(voltages, freq_ghz, self.workload.macs_by_layer, options.describe())

    def layer_timing(self, options: TimingOptions, calibration_images: int = 32,
                     pairs_per_layer: int = 4096) -> LayerTiming:
        """The event-driven model's per-layer histograms on operand pairs
        captured from the data set's first ``calibration_images`` images."""
        integer(calibration_images, "calibration images", 1)
        integer(pairs_per_layer, "pairs per layer", 1)
        images = calibration_images_of(self.batches, calibration_images, self.world, self.first_image)
        if len(images) < 2:
            raise ValueError("the event timing model needs at least 2 images to capture operand pairs; "
                             "use --timing-model event-uniform or static-uniform for one image")
        return LayerTiming.capture(self.model, images, options, self.device, pairs_per_layer,
                                   rows=self.array.rows)

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
        return Golden(ev.pred, ev.accuracy(), shapes)

    def point(self, volts: float, p_bits: Rates, mask: int, seed: int,
              strategy: str) -> PointResult:
        """The result at per-bit probabilities ``p_bits`` (float64 [W] for
        every layer, or {layer name: float64 [W]}: those of ``volts``, V)
        with the ``mask`` bits protected."""
        key = self.key(volts, p_bits, mask, seed)
        if key not in self._done:
            self._done[key] = self._measure(p_bits, mask, seed, f"{volts:.3f} V {strategy} {mask:#x}")
        acc, replays_by_layer = self._done[key]
        replays = acc["corrected"] / self.n_images
        bits = bin(mask).count("1")
        costs = self.workload.costs(volts, bits, replays_by_layer)
        clean = self.golden.clean
        return PointResult(
            voltage=volts, strategy=strategy, seed=seed, protect=f"{mask:#010x}", protected_bits=bits,
            **{k: acc[k] for k in ("n", "top1", "top1_lo", "top1_hi", "top5", "top5_lo", "top5_hi",
                                   "agree", "agree_lo", "agree_hi")},
            top1_loss=clean["top1"] - acc["top1"], agree_loss=1.0 - acc["agree"],
            injected=acc["injected"], corrected=acc["corrected"],
            injected_per_image=acc["injected"] / self.n_images, corrected_per_image=replays,
            corrected_per_layer=dict(replays_by_layer),
            **dataclasses.asdict(costs), max_p=float(per_bit_max(p_bits).max()),
            injected_per_bit=acc["injected_per_bit"], corrected_per_bit=acc["corrected_per_bit"],
            evaluations=1, seconds=acc["seconds"])

    def _measure(self, p_bits: Rates, mask: int, seed: int, desc: str):
        """(accuracy and counts, corrected errors per image per layer)."""
        if not bool((per_bit_max(p_bits) > 0).any()):
            # No bit can err: no event is drawn at all, the run IS the golden run.
            acc = dict(self.golden.clean, agree=1.0, agree_lo=1.0, agree_hi=1.0, injected=0,
                       corrected=0, injected_per_bit=[0] * self.acc_bits,
                       corrected_per_bit=[0] * self.acc_bits, seconds=0.0)
            return acc, {}
        config = lambda p: FaultConfig(p, protect=mask, seed=seed, rows=self.array.rows)  # noqa: E731
        set_faults(self.model, config(p_bits) if isinstance(p_bits, torch.Tensor)
                   else {name: config(p) for name, p in p_bits.items()})
        self.evaluations += 1
        try:
            ev = self._evaluate(self.golden.pred, desc)
        finally:
            set_faults(self.model, None)
        return _counted(ev), {n: float(c[1].sum()) / self.n_images for n, c in ev.per_layer.items()}


@torch.no_grad()
def warm_up(model: torch.nn.Module, images: torch.Tensor, device: str) -> None:
    """One untimed forward pass, so that first-call costs (allocations,
    thread pools, GPU handles) are not charged to the first timed run."""
    with forward_pass(0):
        model(normalize(images.to(device)))


def _counted(ev: Evaluation) -> dict:
    acc = ev.accuracy()
    acc["agree"] = ev.agree.value
    acc["agree_lo"], acc["agree_hi"] = ev.agree.interval
    acc["injected"], acc["corrected"] = int(ev.counts[0].sum()), int(ev.counts[1].sum())
    acc["injected_per_bit"], acc["corrected_per_bit"] = ev.counts[0].tolist(), ev.counts[1].tolist()
    return acc

