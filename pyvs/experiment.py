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
from typing import Dict, Optional, Tuple

import torch

from .costs import Workload
from .data import normalize
from .distributed import World
from .energy import EnergyParams
from .evaluate import Evaluation, evaluate
from .latency import ArrayConfig
from .nn.config import FaultConfig
from .nn.layers import set_faults, systolic_layers
from .nn.probe import forward_pass
from .results import PointResult


@dataclasses.dataclass
class Golden:
    """The fault-free run: top-5 predictions int64 [N, 5], its accuracies
    (:meth:`pyvs.evaluate.Evaluation.accuracy`) and the GEMM shape of every
    layer (groups, rows per image, K, N per group)."""

    pred: torch.Tensor
    clean: dict
    shapes: Dict[str, tuple]


def model_width(model: torch.nn.Module) -> int:
    """The accumulator width of a converted model's layers, bits (a
    ValueError if it has none or they differ)."""
    widths = {layer.acc_bits for _, layer in systolic_layers(model)}
    if not widths:
        raise ValueError("the model has no systolic layers: convert it with pyvs.convert first")
    if len(widths) > 1:
        raise ValueError(f"the model's layers have different accumulator widths {sorted(widths)}")
    return widths.pop()


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

    def key(self, volts: float, p_bits: torch.Tensor, mask: int, seed: int) -> tuple:
        """What decides a point's outcome: two points with the same key give
        the same outputs and counts."""
        erring = sum(1 << b for b in range(self.acc_bits) if float(p_bits[b]) > 0)
        return (volts, seed, mask & erring)

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

    def point(self, volts: float, p_bits: torch.Tensor, mask: int, seed: int,
              strategy: str) -> PointResult:
        """The result at per-bit probabilities ``p_bits`` (float64 [W], those
        of ``volts``, V) with the ``mask`` bits protected."""
        key = self.key(volts, p_bits, mask, seed)
        if key not in self._done:
            self._done[key] = self._measure(p_bits, mask, seed, f"{volts:.3f} V {strategy} {mask:#x}")
        acc, replays_by_layer = self._done[key]
        replays = acc["corrected"] / self.n_images
        bits = bin(mask).count("1")
        costs = self.workload.costs(volts, bits, replays, replays_by_layer)
        clean = self.golden.clean
        return PointResult(
            voltage=volts, strategy=strategy, seed=seed, protect=f"{mask:#010x}", protected_bits=bits,
            **{k: acc[k] for k in ("n", "top1", "top1_lo", "top1_hi", "top5", "top5_lo", "top5_hi",
                                   "agree", "agree_lo", "agree_hi")},
            top1_loss=clean["top1"] - acc["top1"], agree_loss=1.0 - acc["agree"],
            injected=acc["injected"], corrected=acc["corrected"],
            injected_per_image=acc["injected"] / self.n_images, corrected_per_image=replays,
            **dataclasses.asdict(costs), max_p=float(p_bits.max()),
            injected_per_bit=acc["injected_per_bit"], corrected_per_bit=acc["corrected_per_bit"],
            evaluations=1, seconds=acc["seconds"])

    def _measure(self, p_bits: torch.Tensor, mask: int, seed: int, desc: str):
        """(accuracy and counts, corrected errors per image per layer or None)."""
        if not bool((p_bits > 0).any()):
            # No bit can err: no event is drawn at all, the run IS the golden run.
            acc = dict(self.golden.clean, agree=1.0, agree_lo=1.0, agree_hi=1.0, injected=0,
                       corrected=0, injected_per_bit=[0] * self.acc_bits,
                       corrected_per_bit=[0] * self.acc_bits, seconds=0.0)
            return acc, {}
        set_faults(self.model, FaultConfig(p_bits, protect=mask, seed=seed, rows=self.array.rows))
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

