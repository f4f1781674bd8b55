"""What the timing study scripts share: their command line's data options,
MobileNetV2 on the data, where errors begin on a table, and their ending
(JSON, printed table, figure)."""
from __future__ import annotations

import argparse
import json
from typing import Callable, Optional, Sequence

import numpy as np

from pyvs import data, models
from pyvs.costs import Workload
from pyvs.dataflow import calibration_images
from pyvs.evaluate import evaluate
from pyvs.nn import convert
from pyvs.timing.layers import ONSET


def parser(doc: str, out: str, data_required: bool = True,
           data_help: Optional[str] = None) -> argparse.ArgumentParser:
    """--data, --weights, --calibration-images and --out (a prefix for
    .json and .png, default ``out``); the description is ``doc``'s first line."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", required=data_required, default=None, help=data_help)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--calibration-images", type=int, default=32)
    ap.add_argument("--out", default=out, help="output prefix (.json, .png)")
    return ap


def mobilenet(args):
    """(model, calibration images, MACs per layer) of MobileNetV2 on
    --data's first --calibration-images images (--weights)."""
    model = convert(models.mobilenet_v2_int8(args.weights))
    batches = data.decoded(data.imagenet_dataset(args.data, args.calibration_images), 16, progress=False)
    images = calibration_images(batches, args.calibration_images)
    return model, images, Workload(evaluate(model, batches[:1], progress=False).shapes).macs_by_layer


def onset(p: np.ndarray, volts: Sequence[float]) -> float:
    """The highest voltage at which a table's ([V, W]) most erring bit
    reaches ONSET; nan if none does."""
    hit = [v for v, row in zip(volts, p) if row.max() >= ONSET]
    return max(hit) if hit else float("nan")


def finish(doc: dict, out: str, print_table: Callable[[dict], None], plot: Callable[[dict, str], None]) -> None:
    """Writes ``out``.json, prints the table and draws ``out``.png."""
    with open(out + ".json", "w") as f:
        json.dump(doc, f)
    print_table(doc)
    plot(doc, out + ".png")
