"""Where a forward pass's images sit in the data set, and what the pass
measured. Layers read both from the pass they run in, a context variable
set by whoever runs the model; nothing is left behind on the layers.

- ``image_offset``: the global index of the batch's first image. A layer's
  GEMM row m of image i is global row ``(image_offset + i) * rows_per_image
  + m``, and the timing errors are a function of the global row: an image
  gets the same errors however the data set is batched. Outside any
  ``forward_pass`` block (a plain loop over batches), each systolic layer
  numbers the images itself, continuing from those it ran before, so every
  image of the loop gets its own errors, the ones it gets in an evaluation
  that starts at image 0; ``set_faults`` starts the numbering again.
- :class:`Probe`: per layer, the injected and corrected error counts (summed
  on the device, without a host synchronization per layer) and the GEMM
  shape.

    probe = Probe()
    with forward_pass(image_offset=100, probe=probe):
        model(images[100:150])
    probe.counts()   # {layer name: int64 [2, W]}
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Callable, Dict, Iterator, Optional, Tuple

import torch

from ..checks import integer

GemmShape = Tuple[int, int, int, int]  # (groups, GEMM rows per image, K, N per group)


@dataclasses.dataclass
class Probe:
    """What forward passes measured, per systolic layer (by qualified name)."""

    _counts: Dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    shapes: Dict[str, GemmShape] = dataclasses.field(default_factory=dict)

    def record(self, layer: str, stats: torch.Tensor, shape: GemmShape) -> None:
        """Adds one GEMM's counts, int64 [2, W] (injected, corrected per bit)."""
        if layer in self._counts:
            self._counts[layer] += stats
        else:
            self._counts[layer] = stats.clone()
        self.shapes[layer] = shape

    def counts(self) -> Dict[str, torch.Tensor]:
        """Per layer: int64 [2, W] on the CPU, injected (row 0) and corrected
        (row 1) counts per accumulator bit."""
        return {name: c.cpu() for name, c in self._counts.items()}


@dataclasses.dataclass(frozen=True)
class Pass:
    image_offset: int = 0
    probe: Optional[Probe] = None
    # called with (layer name, a [G, M, K], w [G, K, N], GEMM rows per image,
    # global index of the batch's first image) before each GEMM
    capture: Optional[Callable] = None
    # False: no forward_pass block is open; the layers number the images
    # themselves, continuing from the images they ran before
    explicit: bool = False


_PASS: contextvars.ContextVar = contextvars.ContextVar("pyvs_forward_pass", default=Pass())


@contextlib.contextmanager
def forward_pass(image_offset: int = 0, probe: Optional[Probe] = None,
                 capture: Optional[Callable] = None) -> Iterator[Pass]:
    """The forward passes run inside this block see the batch's first image
    as global image ``image_offset``, report to ``probe``, and hand every
    GEMM's operands to ``capture`` (:class:`pyvs.dataflow.Capture`)."""
    token = _PASS.set(Pass(integer(image_offset, "image_offset", 0), probe, capture, explicit=True))
    try:
        yield _PASS.get()
    finally:
        _PASS.reset(token)


def current_pass() -> Pass:
    """The pass a layer runs in (image offset 0 and no probe outside any block)."""
    return _PASS.get()
