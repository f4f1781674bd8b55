"""Where the time of one MobileNetV2 forward pass goes on the simulated array:
GPU time per stage of the systolic layers (quantize, im2col, the op, the
requantization) and per layer kind, the rest of the network, the heaviest
kernels, and the host synchronisations, from CUDA events and torch.profiler
in one run. It measures; it does not judge (scripts/bench_model.py gives the
ratios to the float model).

    python scripts/profile_model.py --weights .data/mobilenet_v2_int8_qnnpack_state_dict.pth \\
        [--device cuda] [--batch-size 256] [--voltage 0.53]
"""
from __future__ import annotations

import argparse
import collections
import time

import torch
import torchvision

import pyvs
from pyvs import models, timing
from pyvs.nn import FaultConfig, forward_pass, set_faults
from pyvs.nn import layers as L

STAGES = {  # (class, method) -> stage
    (L.SystolicConv2d, "taps"): "im2col",
    (L.SystolicConv2d, "im2col"): "im2col",
    (L.SystolicLayer, "gemm"): "op (clean GEMM + events)",
    (L.SystolicLayer, "finish"): "requantize",
}


class Timer:
    """CUDA (or wall-clock) intervals by name, read after one synchronisation."""

    def __init__(self, device):
        self.cuda = device.startswith("cuda")
        self.open, self.spans = [], []

    def now(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def span(self, name, start, end):
        self.spans.append((name, start, end))

    def totals(self):
        if self.cuda:
            torch.cuda.synchronize()
        out = collections.Counter()
        for name, a, b in self.spans:
            out[name] += a.elapsed_time(b) if self.cuda else 1e3 * (b - a)
        return out  # ms


def instrument(model, timer):
    """Times every stage method of the systolic layers and every layer by kind."""
    for (cls, meth), stage in STAGES.items():
        orig = getattr(cls, meth)

        def wrapped(self, *a, _orig=orig, _stage=stage, **k):
            t0 = timer.now()
            out = _orig(self, *a, **k)
            timer.span(_stage, t0, timer.now())
            return out
        setattr(cls, meth, wrapped)
    orig_q = L.quantize

    def quantize(*a, **k):
        t0 = timer.now()
        out = orig_q(*a, **k)
        timer.span("quantize", t0, timer.now())
        return out
    L.quantize = quantize
    for _, layer in L.systolic_layers(model):
        kind = kind_of(layer)
        layer.register_forward_pre_hook(lambda m, i: setattr(m, "_t0", timer.now()))
        layer.register_forward_hook(lambda m, i, o, _k=kind: timer.span("layer: " + _k, m._t0, timer.now()))


def kind_of(layer):
    if isinstance(layer, L.SystolicLinear):
        return "classifier"
    if layer.depthwise:
        return "depthwise 3x3"
    if layer.in_channels == 3:
        return "stem 3x3"
    return "pointwise 1x1"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--weights", default=None, help="state_dict of torchvision's int8 MobileNetV2 "
                    "(default: post-training int8 of a random-weight model; the speed does not depend on it)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 256 on CUDA, 25 on CPU")
    ap.add_argument("--voltage", type=float, default=0.53, help="static-uniform table, bits 29-31 protected")
    return ap.parse_args()


@torch.no_grad()
def main():
    args = parse_args()
    dev = args.device
    bs = args.batch_size or (256 if dev.startswith("cuda") else 25)
    x = torch.randn(bs, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(dev)
    if args.weights:
        qmodel = pyvs.convert(models.mobilenet_v2_int8(args.weights))
    else:
        qmodel = pyvs.convert(torchvision.models.mobilenet_v2().eval(), [x[:8].cpu()])
    qmodel = qmodel.to(dev)
    p = timing.error_probabilities([args.voltage], model="static")[0]
    set_faults(qmodel, FaultConfig(p, protect=0xE0000000, seed=1))
    sync = torch.cuda.synchronize if dev.startswith("cuda") else (lambda: None)
    for i in range(2):  # warm-up: cuBLASLt heuristics, the op's table cache
        with forward_pass(i * bs):
            qmodel(x)
    sync()
    t0 = time.perf_counter()
    with forward_pass(2 * bs):
        qmodel(x)
    sync()
    wall = time.perf_counter() - t0

    timer = Timer(dev)
    instrument(qmodel, timer)
    start = timer.now()
    with forward_pass(3 * bs):
        qmodel(x)
    timer.span("forward pass", start, timer.now())
    tot = timer.totals()
    fwd = tot.pop("forward pass")
    layers = {k: v for k, v in tot.items() if k.startswith("layer: ")}
    stages = {k: v for k, v in tot.items() if not k.startswith("layer: ")}
    print(f"MobileNetV2 int8 on the simulated array, batch {bs} on {dev}, static table at {args.voltage} V, "
          f"bits 29-31 protected; torch {torch.__version__}")
    print(f"forward pass: {wall * 1e3:.1f} ms wall without instrumentation = {bs / wall:.0f} images/s; "
          f"{fwd:.1f} ms instrumented")
    print("| stage of the systolic layers | ms | share of the pass |\n|---|---|---|")
    for k, v in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {v:.2f} | {v / fwd:.1%} |")
    rest = fwd - sum(layers.values())
    print(f"| outside the systolic layers (adds, pooling, glue) | {rest:.2f} | {rest / fwd:.1%} |")
    print("| layer kind | ms | share |\n|---|---|---|")
    for k, v in sorted(layers.items(), key=lambda kv: -kv[1]):
        print(f"| {k[7:]} | {v:.2f} | {v / fwd:.1%} |")

    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev.startswith("cuda"):
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        with forward_pass(4 * bs):
            qmodel(x)
        sync()
    ev = prof.key_averages()
    sort = "self_cuda_time_total" if dev.startswith("cuda") else "self_cpu_time_total"
    print(ev.table(sort_by=sort, row_limit=25, max_name_column_width=70))
    syncs = {e.key: e.count for e in ev if any(s in e.key for s in ("Synchronize", "Memcpy", "cudaMalloc",
                                                                    "aten::item", "_local_scalar_dense"))}
    print("host-device synchronisations and copies in one forward pass:", syncs or "none")


if __name__ == "__main__":
    main()
