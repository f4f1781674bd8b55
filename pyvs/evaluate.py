"""Accuracy of a (converted) model: top-1/top-5 against labels and top-1
agreement with a fault-free ("golden") run, with 95 % confidence intervals.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
                                                      ^^^^^^^^^^
"""
from __future__ import annotations

import math
import time
from typing import Iterable, Optional, Tuple

import torch
from tqdm import tqdm

from .nn.config import reset_stats, set_image_offset, total_stats


def wilson_interval(k: int, n: int, z: float = 1.959964) -> Tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion k/n (fractions)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, centre - half), min(1.0, centre + half))


@torch.no_grad()
def predict(model: torch.nn.Module, batches: Iterable, device: str = "cpu", desc: str = "evaluating",
            progress: bool = True):
    """Runs the model over (images float [B, 3, H, W], labels int64 [B])
    batches in order, telling its systolic layers each batch's global image
    offset. Returns (top-5 predictions int64 [N, 5], labels int64 [N])."""
    preds, labels = [], []
    total = None
    try:
        total = sum(len(y) for _, y in batches) if isinstance(batches, list) else len(batches.dataset)
    except (TypeError, AttributeError):
        pass
    offset = 0
    with tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for x, y in batches:
            set_image_offset(model, offset)
            out = model(x.to(device))
            preds.append(out.topk(5, dim=1).indices.cpu())
            labels.append(y.cpu())
            offset += len(y)
            bar.update(len(y))
    if not preds:
        raise ValueError("evaluation got no images")
    return torch.cat(preds), torch.cat(labels)


def evaluate(model: torch.nn.Module, batches: Iterable, golden: Optional[torch.Tensor] = None,
             device: str = "cpu", desc: str = "evaluating", progress: bool = True) -> dict:
    """One flat result row: n, top1, top5 (fractions) with 95 % CIs
    (``*_lo``/``*_hi``), agree (top-1 agreement with ``golden``, the golden
    run's top-5 predictions int64 [N, 5]), injected/corrected error counts
    over all layers, per-bit counts, seconds and images_per_s. The
    predictions are in row['pred'] (int64 [N, 5])."""
    reset_stats(model)
    t0 = time.perf_counter()
    pred, labels = predict(model, batches, device, desc, progress)
    seconds = time.perf_counter() - t0
    n = len(labels)
    row = {"n": n}
    for name, hit in (("top1", pred[:, 0] == labels), ("top5", (pred == labels[:, None]).any(1))):
        k = int(hit.sum())
        row[name] = k / n
        row[f"{name}_lo"], row[f"{name}_hi"] = wilson_interval(k, n)
    if golden is not None:
        if len(golden) != n:
            raise ValueError(f"golden run has {len(golden)} predictions, this run {n}")
        k = int((pred[:, 0] == golden[:, 0]).sum())
        row["agree"] = k / n
        row["agree_lo"], row["agree_hi"] = wilson_interval(k, n)
    stats = total_stats(model)
    row["injected"], row["corrected"] = int(stats[0].sum()), int(stats[1].sum())
    row["injected_per_bit"], row["corrected_per_bit"] = stats[0].tolist(), stats[1].tolist()
    row["seconds"], row["images_per_s"] = seconds, n / seconds if seconds > 0 else float("inf")
    row["pred"] = pred
    return row
