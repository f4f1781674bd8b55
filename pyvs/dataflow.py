"""What the PEs of the array see: operand pairs captured from a converted
model's layers as data flows through the weight-stationary array, for the
per-layer timing-error tables of the event-driven model
(:class:`pyvs.timing.LayerTiming`).

    voltage -> error table -> op -> layer -> model -> evaluation -> report
    (per-layer error tables need the model's data: this module closes the loop)

In the array, the PE at depth k of column n holds the weight w[k, n]; GEMM
rows stream through it one per cycle, so in consecutive cycles it sees
(a[m-1, k], s(m-1, n, k-1)), then (a[m, k], s(m, n, k-1)), where
s(m, n, k-1) = sum over j = k0 .. k-1 of a[m, j] w[j, n], W bits, is the
partial sum entering it (k0: the start of its K-tile of `rows` MACs).
:class:`Capture` samples such (m, n, k) uniformly over each layer's MACs
(m >= 1), keeping at most ``samples`` per layer over any number of batches
(a reservoir by random keys: O(samples) memory). Consecutive images of a
batch are consecutive rows, so the first row of an image is paired with
the last row of the one before it (across the image boundary, as the array
streams a batch); only a forward pass's first row has no predecessor.
:func:`capture_pairs` therefore runs the calibration images in passes of
its own (:data:`CHUNK`, aligned to the calibration set): the pairs depend
on neither the caller's batching nor the number of processes.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from .data import normalize
from .distributed import World
from .hardware import ACC_BITS, DATAFLOWS, ROWS
from .nn.layers import model_width, set_faults, stream_id
from .nn.probe import forward_pass
from .timing import LayerTiming, Pairs, TimingSpec

_FIELDS = ("prev_a", "a", "w", "prev_x", "x")


class Capture:
    """Collects operand pairs per layer, to be installed in a forward pass
    (``forward_pass(..., capture=Capture(...))``).

    samples: pairs kept per layer; per_image: candidates drawn from each
    image; acc_bits: W; rows: the array height (MACs per K-tile, 'ws');
    dataflow: 'ws' (consecutive rows m-1, m of a column: any row of the
    image but a pass's first, any column and depth) or 'os' (consecutive depths k-1, k of one
    output, whose PE holds the sum of the whole K: any row and column, k >=
    1); seed: with the layer and the image's global index, what the
    candidates depend on. Which pairs are kept depends on neither the
    batching nor the number of processes."""

    def __init__(self, samples: int = 4096, per_image: int = 256, acc_bits: int = ACC_BITS, rows: int = ROWS,
                 seed: int = 0, dataflow: str = "ws"):
        if min(samples, per_image, rows) < 1:
            raise ValueError(f"Capture: samples, per_image and rows must be >= 1, got {samples}, "
                             f"{per_image}, {rows}")
        if dataflow not in DATAFLOWS:
            raise ValueError(f"Capture: dataflow must be one of {', '.join(DATAFLOWS)}, got {dataflow!r}")
        self.samples, self.per_image, self.acc_bits, self.rows, self.seed = samples, per_image, acc_bits, rows, seed
        self.dataflow = dataflow
        self.kept: Dict[str, Tuple[torch.Tensor, List[torch.Tensor]]] = {}

    def __call__(self, layer: str, a: torch.Tensor, w: torch.Tensor, rows_per_image: int,
                 first_image: int) -> None:
        M, K = a.shape[1], a.shape[2]
        if self.dataflow == "os":  # pairs within one output: K >= 2, any row of each image
            if K >= 2:
                for i in range(M // max(rows_per_image, 1)):
                    self._sample_os(layer, a, w, i * rows_per_image, max(rows_per_image, 1), first_image + i)
            return
        if K < 1 or M < 2:
            return
        if rows_per_image >= 2:
            for i in range(M // rows_per_image):
                self._sample(layer, a, w, i * rows_per_image, rows_per_image, first_image + i)
        else:  # one row per image (a classifier): consecutive images follow each other through the PE
            self._sample(layer, a, w, 0, M, first_image)

    def _sample(self, layer, a, w, row0, rows_per_image, image):
        """per_image candidates from one image's rows (gathered where a lies)."""
        G, K, N, S = a.shape[0], a.shape[2], w.shape[2], self.per_image
        gen = torch.Generator().manual_seed(hash((self.seed, stream_id(layer), image)) & 0x7FFFFFFF)
        keys = torch.rand(S, generator=gen, dtype=torch.float64)
        g, m = torch.randint(0, G, (S,), generator=gen), row0 + torch.randint(0, rows_per_image, (S,), generator=gen)
        n, k = torch.randint(0, N, (S,), generator=gen), torch.randint(0, K, (S,), generator=gen)
        # An image's first row follows the previous image's last one through
        # the PE; the pass's first row has no predecessor here: its
        # candidates are dropped (the draws of the others stay as they are).
        has_prev = m >= 1
        keys, g, m, n, k = (t[has_prev] for t in (keys, g, m, n, k))
        j = (k - k % self.rows)[:, None] + torch.arange(self.rows)[None]        # the tile's MACs
        before = (j < k[:, None]) & (j < K)
        g, m, n, k, jj, before = (t.to(a.device) for t in (g, m, n, k, j.clamp(max=K - 1), before))
        wj = w[g[:, None], jj, n[:, None]].to(torch.int64)
        mask = (1 << self.acc_bits) - 1
        partial = lambda row: (a[g[:, None], row[:, None], jj].to(torch.int64) * wj * before).sum(1) & mask  # noqa: E731
        found = [a[g, m - 1, k], a[g, m, k], w[g, k, n], partial(m - 1), partial(m), g, m, n, k]
        self.merge(layer, keys, [f.to(torch.int64).cpu() for f in found])

    def _sample_os(self, layer, a, w, row0, rows_per_image, image):
        """per_image candidates (g, m, n, k >= 1) from one image's rows: the
        PE of output (m, n) goes from (a[m, k-1], w[k-1, n], s(k-2)) to
        (a[m, k], w[k, n], s(k-1)), s(j) the W-bit sum of its first j + 1
        products."""
        G, K, N, S = a.shape[0], a.shape[2], w.shape[2], self.per_image
        gen = torch.Generator().manual_seed(hash((self.seed, stream_id(layer), image)) & 0x7FFFFFFF)
        keys = torch.rand(S, generator=gen, dtype=torch.float64)
        g, m = torch.randint(0, G, (S,), generator=gen), row0 + torch.randint(0, rows_per_image, (S,), generator=gen)
        n, k = torch.randint(0, N, (S,), generator=gen), torch.randint(1, K, (S,), generator=gen)
        g, m, n, k = (t.to(a.device) for t in (g, m, n, k))
        j = torch.arange(K, device=a.device)[None]
        products = a[g[:, None], m[:, None], j].to(torch.int64) * w[g[:, None], j, n[:, None]].to(torch.int64)
        mask = (1 << self.acc_bits) - 1
        prefix = lambda upto: (products * (j < upto[:, None])).sum(1) & mask  # noqa: E731
        found = [a[g, m, k - 1], a[g, m, k], w[g, k, n], prefix(k - 1), prefix(k), g, m, n, k, w[g, k - 1, n]]
        self.merge(layer, keys, [f.to(torch.int64).cpu() for f in found])

    def merge(self, layer: str, keys: torch.Tensor, found: List[torch.Tensor]) -> None:
        """Adds candidates, keeping the ``samples`` with the smallest keys."""
        if layer in self.kept:
            old_keys, old = self.kept[layer]
            keys = torch.cat([old_keys, keys])
            found = [torch.cat([o, f]) for o, f in zip(old, found)]
        order = torch.argsort(keys, stable=True)[: self.samples]
        self.kept[layer] = (keys[order], [f[order] for f in found])

    def pairs(self) -> Dict[str, Pairs]:
        """Per layer (in the order first seen): the captured pairs."""
        return {name: Pairs(*[f.numpy() for f in found[:5]], prev_w=found[9].numpy() if len(found) > 9 else None)
                for name, (_, found) in self.kept.items()}

    def where(self, layer: str) -> Dict[str, np.ndarray]:
        """Where each kept pair of ``layer`` was seen: group g, GEMM row m
        (of the pass that captured it), column n and depth k, int64 [S] each."""
        return {name: f.numpy() for name, f in zip("gmnk", self.kept[layer][1][5:])}


CHUNK = 16  # calibration images per forward pass


def calibration_images(batches: Sequence, images: int, world: World = World(),
                       first_image: int = 0) -> torch.Tensor:
    """The data set's first ``images`` images (or all, if fewer), on every
    rank: uint8 or float [n, 3, H, W] on the CPU. ``batches``: this rank's
    shard, starting at global image ``first_image``."""
    mine, offset = [], first_image
    for x, _ in batches:
        take = min(len(x), images - offset)
        if take <= 0:
            break
        mine.append(x[:take].cpu())
        offset += len(x)
    parts = [p for part in world.gather(mine) for p in part]
    if not parts:
        raise ValueError("no calibration image: the data set is empty")
    return torch.cat(parts)


@torch.no_grad()
def capture_pairs(model: torch.nn.Module, images: torch.Tensor, device: str = "cpu", samples: int = 4096,
                  per_image: int = 256, acc_bits: int = ACC_BITS, rows: int = ROWS, seed: int = 0,
                  progress: bool = False, dataflow: str = "ws") -> Dict[str, Pairs]:
    """Runs the fault-free model on ``images`` ([n, 3, H, W], n >= 2) and
    returns the operand pairs of every systolic layer (those it could pair)."""
    if len(images) < 2:
        raise ValueError(f"capture_pairs: at least 2 calibration images are needed, got {len(images)}")
    capture = Capture(samples, per_image, acc_bits, rows, seed, dataflow)
    set_faults(model, None)
    with tqdm(total=len(images), desc="capturing operand pairs", unit="img", disable=not progress,
              leave=False) as bar:
        for lo in range(0, len(images), CHUNK):
            with forward_pass(lo, capture=capture):
                model(normalize(images[lo: lo + CHUNK].to(device)))
            bar.update(len(images[lo: lo + CHUNK]))
    found = capture.pairs()
    if not found:
        raise ValueError("capture_pairs: the model ran no systolic layer on the calibration images")
    return found


def layer_timing(model: torch.nn.Module, images: torch.Tensor, spec: TimingSpec, device: str = "cpu",
                 rows: int = ROWS, progress: bool = False, dataflow: str = "ws") -> LayerTiming:
    """The event-driven model's per-layer histograms of a converted model:
    its operand pairs captured on ``images`` (:func:`capture_pairs`,
    ``spec.pairs_per_layer`` per layer, ``spec.candidates_per_image`` drawn
    per image) and simulated with ``spec``'s technology."""
    acc_bits = model_width(model)
    per_image = spec.candidates_per_image
    pairs = capture_pairs(model, images, device, spec.pairs_per_layer, per_image, acc_bits, rows, spec.options.seed,
                          progress, dataflow)
    return spec.layer_timing(pairs, acc_bits, {"kind": "captured", "images": len(images),
                                               "pairs_per_layer": spec.pairs_per_layer, "per_image": per_image,
                                               "rows": rows, "dataflow": dataflow}, progress)


__all__ = ["Capture", "calibration_images", "capture_pairs", "layer_timing"]

