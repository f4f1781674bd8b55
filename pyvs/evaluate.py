"""Accuracy of a (converted) model: top-1/top-5 against labels and top-1
agreement with a fault-free ("golden") run, with 95 % confidence intervals,
and what the systolic layers counted on the way.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
                                                      ^^^^^^^^^^
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from tqdm import tqdm

from .data import normalize
from .distributed import World
from .hardware import ACC_BITS
from .nn.probe import GemmShape, Probe, forward_pass


def wilson_interval(k: int, n: int, z: float = 1.959964) -> Tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion k/n (fractions)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclasses.dataclass(frozen=True)
class Rate:
    """k successes of n, as a fraction with its 95 % Wilson interval."""

    k: int
    n: int

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else float("nan")

    @property
    def interval(self) -> Tuple[float, float]:
        return wilson_interval(self.k, self.n)


@dataclasses.dataclass
class Evaluation:
    """One pass of a model over a data set.

    Attributes: pred (int64 [N, 5], top-5 classes, best first); top1, top5
    (against the labels) and agree (top-1 agreement with the golden
    predictions, None without them) as :class:`Rate`; counts (int64 [2, W],
    injected and corrected timing errors per accumulator bit, all layers);
    per_layer (the same per layer); shapes (GEMM shape per layer); seconds
    (wall time).
    """

    pred: torch.Tensor
    top1: Rate
    top5: Rate
    agree: Optional[Rate]
    counts: torch.Tensor
    per_layer: Dict[str, torch.Tensor]
    shapes: Dict[str, GemmShape]
    seconds: float

    @property
    def n(self) -> int:
        return self.top1.n

    @property
    def images_per_s(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")

    def accuracy(self, clean_top1: Optional[float] = None) -> "Accuracy":
        """The accuracies; ``clean_top1``: the golden run's top-1, for the
        losses (None: this is the golden run, no loss)."""
        # The golden run agrees with itself exactly: no interval.
        agree = _rate(self.agree) if self.agree is not None else (1.0, 1.0, 1.0)
        clean = self.top1.value if clean_top1 is None else clean_top1
        return Accuracy(self.n, *_rate(self.top1), *_rate(self.top5), *agree,
                        top1_loss=clean - self.top1.value, agree_loss=1.0 - agree[0])

    def counts_of(self, n_images: int) -> "Counts":
        """The timing errors counted, totals and per image of ``n_images``."""
        injected, corrected = int(self.counts[0].sum()), int(self.counts[1].sum())
        return Counts(injected=injected, corrected=corrected, injected_per_image=injected / n_images,
                      corrected_per_image=corrected / n_images,
                      corrected_per_layer={n: float(c[1].sum()) / n_images for n, c in self.per_layer.items()},
                      injected_per_bit=self.counts[0].tolist(), corrected_per_bit=self.counts[1].tolist(),
                      injected_per_layer={n: float(c[0].sum()) / n_images for n, c in self.per_layer.items()})


def _rate(r: Rate) -> Tuple[float, float, float]:
    return (r.value, *r.interval)


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """What one evaluation scored: fractions with 95 % Wilson intervals
    (``*_lo``, ``*_hi``) over n images. agree: top-1 agreement with the
    golden run (1 for the golden run itself); top1_loss: the golden run's
    top-1 minus this top-1; agree_loss: 1 - agree."""

    n: int
    top1: float
    top1_lo: float
    top1_hi: float
    top5: float
    top5_lo: float
    top5_hi: float
    agree: float
    agree_lo: float
    agree_hi: float
    top1_loss: float
    agree_loss: float

    def meets(self, budget: float) -> bool:
        """Whether both losses are within ``budget`` (fraction)."""
        return self.agree_loss <= budget + 1e-12 and self.top1_loss <= budget + 1e-12


@dataclasses.dataclass
class Golden:
    """The fault-free run: top-5 predictions int64 [N, 5], its accuracy,
    its wall time (s) and the GEMM shape of every layer (groups, rows per
    image, K, N per group), in the model's order."""

    pred: torch.Tensor
    accuracy: Accuracy
    seconds: float
    shapes: Dict[str, GemmShape]

    @property
    def top1(self) -> float:
        return self.accuracy.top1

    @property
    def images_per_s(self) -> float:
        return self.accuracy.n / self.seconds if self.seconds > 0 else float("inf")


@dataclasses.dataclass(frozen=True)
class Counts:
    """Timing errors of one evaluation: injected (flipped a bit) and
    corrected (Razor replays), over the data set and per image; per layer
    (per image) and per accumulator bit (totals, LSB first)."""

    injected: int
    corrected: int
    injected_per_image: float
    corrected_per_image: float
    corrected_per_layer: Dict[str, float]
    injected_per_bit: List[int]
    corrected_per_bit: List[int]
    injected_per_layer: Dict[str, float] = dataclasses.field(default_factory=dict)

    @classmethod
    def none(cls, acc_bits: int) -> "Counts":
        return cls(0, 0, 0.0, 0.0, {}, [0] * acc_bits, [0] * acc_bits, {})


def top_classes(logits: torch.Tensor, k: int = 5) -> torch.Tensor:
    """The k best classes of each row of logits [N, C], best first, int64
    [N, k]. Equal logits rank by the lower class index, on every device:
    quantized logits tie often, and torch.topk breaks ties differently on
    CPU and CUDA."""
    return torch.sort(logits, dim=1, descending=True, stable=True).indices[:, :k]


def _total(batches) -> Optional[int]:
    try:
        return sum(len(y) for _, y in batches) if isinstance(batches, list) else len(batches.dataset)
    except (TypeError, AttributeError):
        return None


@torch.no_grad()
def predict(model: torch.nn.Module, batches: Iterable, device: str = "cpu", desc: str = "evaluating",
            progress: bool = True, probe: Optional[Probe] = None, first_image: int = 0):
    """Runs the model over (images [B, 3, H, W], labels int64 [B]) batches in
    order, each in a forward pass that knows its global image offset (the
    first batch's first image is global image ``first_image``). Images are
    float model input or uint8 pixels (normalized here, on the device,
    :func:`pyvs.data.normalize`). Returns (top-5 predictions int64 [N, 5],
    labels int64 [N]); empty without batches."""
    preds = [torch.zeros(0, 5, dtype=torch.int64)]
    labels = [torch.zeros(0, dtype=torch.int64)]
    offset = first_image
    with tqdm(total=_total(batches), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for x, y in batches:
            with forward_pass(offset, probe):
                out = model(normalize(x.to(device)))
            preds.append(top_classes(out).cpu())
            labels.append(y.cpu())
            offset += len(y)
            bar.update(len(y))
    return torch.cat(preds), torch.cat(labels)


def evaluate(model: torch.nn.Module, batches: Iterable, golden: Optional[torch.Tensor] = None,
             device: str = "cpu", desc: str = "evaluating", progress: bool = True,
             acc_bits: int = ACC_BITS, world: World = World(), first_image: int = 0) -> Evaluation:
    """Evaluates ``model`` on ``batches`` (see :func:`predict`); ``golden``:
    the golden run's predictions, int64 [N, 5]; ``acc_bits``: the width of
    the summed counts. Under torchrun, ``batches`` are this rank's shard,
    starting at global image ``first_image``, and the result is that of the
    whole data set, the same on every rank (predictions gathered in order,
    counts summed, seconds those of the slowest rank)."""
    probe = Probe()
    t0 = time.perf_counter()
    pred, labels = predict(model, batches, device, desc, progress and world.is_main, probe, first_image)
    seconds = time.perf_counter() - t0
    pred, labels, per_layer, shapes, seconds = _whole(world, pred, labels, probe, seconds)
    n = len(labels)
    if n == 0:
        raise ValueError("evaluation got no images")
    agree = None
    if golden is not None:
        if len(golden) != n:
            raise ValueError(f"golden run has {len(golden)} predictions, this run {n}")
        agree = Rate(int((pred[:, 0] == golden[:, 0]).sum()), n)
    counts = torch.zeros(2, acc_bits, dtype=torch.int64)
    for c in per_layer.values():
        if c.shape[1] == acc_bits:
            counts += c
    return Evaluation(pred=pred, top1=Rate(int((pred[:, 0] == labels).sum()), n),
                      top5=Rate(int((pred == labels[:, None]).any(1).sum()), n), agree=agree,
                      counts=counts, per_layer=per_layer, shapes=shapes, seconds=seconds)


def _whole(world: World, pred, labels, probe: Probe, seconds: float):
    """The shards of every rank joined: predictions and labels in rank
    order (= global image order), per-layer counts summed, shapes merged,
    the slowest rank's seconds."""
    parts = world.gather((pred, labels, probe.counts(), dict(probe.shapes), seconds))
    per_layer: Dict[str, torch.Tensor] = {}
    shapes: Dict[str, GemmShape] = {}
    for _, _, counts, shape, _ in parts:
        for name, c in counts.items():
            per_layer[name] = per_layer[name] + c if name in per_layer else c.clone()
        shapes.update(shape)
    return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), per_layer, shapes,
            max(p[4] for p in parts))
