"""Images per second of int8 MobileNetV2 on the simulated array, with and
without timing-error injection, against torchvision's clean float model on
the same device, all measured in one run; and the time of one sweep point on
50,000 ImageNet images, extrapolated from the measured rate (images already
decoded on the device, as the sweep holds them).

The clean float model is torchvision's MobileNetV2 with the same (BN-folded)
weights: fp16 channels-last on CUDA, float32 on CPU. The int8 model is
torchvision's int8 MobileNetV2 imported by pyvs.convert (weights from
--weights), or, without a weights file, pyvs's post-training quantization of
a randomly initialised float model (the speed does not depend on the
weights). Images: the sample under --data, or random ones.

    python scripts/bench_model.py --weights ../shared/data/mobilenet_v2_int8_qnnpack_state_dict.pth \\
        --data ../shared/data [--device cuda] [--append]
"""
from __future__ import annotations

import argparse
import time

import torch
import torchvision

import benchlib
import pyvs
from pyvs import data, models, timing
from pyvs.nn import FaultConfig, forward_pass, set_faults


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def images_per_s(model, batches, device, dtype=None, channels_last=False):
    """Best images/s over the batches after one warm-up batch; each batch
    keeps its global image offset, as in an evaluation."""
    rates = []
    offset = 0
    for i, x in enumerate(batches):
        if dtype is not None:
            x = x.to(dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        sync(device)
        t0 = time.perf_counter()
        with forward_pass(offset):
            model(x)
        sync(device)
        offset += len(x)
        if i > 0:
            rates.append(len(x) / (time.perf_counter() - t0))
    return max(rates)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--weights", default=None, help="state_dict of torchvision's int8 MobileNetV2")
    ap.add_argument("--float-weights", default=None,
                    help="state_dict of the float MobileNetV2 (default: random weights)")
    ap.add_argument("--data", default=None, help="ImageNet sample folder (default: random images)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 256 on CUDA, 50 on CPU")
    ap.add_argument("--batches", type=int, default=None, help="timed batches + 1 warm-up (default: 4 CUDA, 3 CPU)")
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()
    cuda = args.device == "cuda"
    args.batch_size = args.batch_size or (256 if cuda else 50)
    args.batches = args.batches or (4 if cuda else 3)
    if args.batches < 2:
        raise SystemExit("bench_model: need at least 2 batches (one is a warm-up)")
    return args


def images_of(args):
    """(float images [n, 3, 224, 224] on the CPU, what they are)."""
    n = args.batch_size * args.batches
    if args.data:
        ds = data.imagenet_dataset(args.data, n)
        images = data.normalize(torch.cat([x for x, _ in data.loader(ds, args.batch_size)]))
        return images, f"{len(images)} sample images"
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(0)), f"{n} random images"


def models_of(args, images):
    """(float model, converted int8 model, what the int8 model is), on the device."""
    fmodel = (models.float_model("mobilenet_v2", args.float_weights) if args.float_weights
              else torchvision.models.mobilenet_v2().eval())
    if args.weights:
        qmodel = pyvs.convert(models.mobilenet_v2_int8(args.weights))
        what = "torchvision's int8 MobileNetV2 (imported)"
    else:
        qmodel = pyvs.convert(torchvision.models.mobilenet_v2().eval(), [images[:8]])
        what = "pyvs PTQ of a random-weight MobileNetV2"
    return fmodel.to(args.device), qmodel.to(args.device), what


def main():
    args = parse_args()
    dev = args.device
    images, source = images_of(args)
    batches = [x.to(dev) for x in images.split(args.batch_size)]
    fmodel, qmodel, what = models_of(args, images)
    if dev == "cuda":
        f16 = fmodel.half().to(memory_format=torch.channels_last)
        base = images_per_s(f16, batches, dev, torch.float16, channels_last=True)
        rows = [("torchvision float MobileNetV2, fp16 channels-last", base)]
    else:
        base = images_per_s(fmodel, batches, dev)
        rows = [("torchvision float MobileNetV2, float32", base)]
    # The static-uniform rates: the regimes every recorded benchmark ran (the op's
    # cost depends on the rates only, not on which model made them).
    table = timing.error_probabilities([0.53, 0.50], model="static")
    settings = [
        ("pyvs int8, fault-free", None),
        ("pyvs int8, 0.53 V, bits 29-31 protected", FaultConfig(table[0], protect=0xE0000000, seed=1)),
        ("pyvs int8, 0.50 V, unprotected", FaultConfig(table[1], seed=1)),
        ("pyvs int8, 0.53 V, simple kernels only", FaultConfig(table[0], protect=0xE0000000, seed=1,
                                                               impl="simple")),
    ]
    for name, cfg in settings:
        set_faults(qmodel, cfg)
        rows.append((name, images_per_s(qmodel, batches, dev)))
    lines = ["| model | images/s | vs clean float | one sweep point, 50,000 images |", "|---|---|---|---|"]
    lines += [f"| {name} | {rate:.1f} | {rate / base:.3f} | {50000 / rate / 60:.1f} min |" for name, rate in rows]
    notes = (f"{what}; {source}, batches of {args.batch_size}, best of {len(batches) - 1} timed batches "
             "after a warm-up; images already decoded on the device. A sweep point is one evaluation; "
             "'auto' points take several.")
    benchlib.report(benchlib.title("scripts/bench_model.py", dev), notes, lines, args.append)


if __name__ == "__main__":
    main()
