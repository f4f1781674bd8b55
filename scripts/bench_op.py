"""Speed of the injecting GEMM (fast path, simple kernel, reference) against
the clean exact integer GEMM, all measured in one run.

For each shape (a 4096^3 GEMM and the GEMMs of MobileNetV2's layers on one
batch of images) and each error regime, the op runs on the same inputs
through its three paths; the script checks that they agree bit for bit and
prints their times as ratios to the clean GEMM of the same device:
torch._int_mm (cuBLASLt int8 tensor cores) on CUDA; on CPU, the faster of
torch._int_mm and float32 BLAS in K-chunks short enough to be exact. The pure-PyTorch reference
runs on the small shapes only. --append adds the table, with machine, date
and commit, to benchmarks/RESULTS.md.

    python scripts/bench_op.py                       # CPU, or CUDA when present
    python scripts/bench_op.py --device cuda --append
"""
from __future__ import annotations

import argparse
import time

import torch
import torchvision

import benchlib
import pyvs
from pyvs import models, reference, timing

# (name, per-bit probabilities [32] or None, protect mask)
def regimes():
    # The static-uniform rates: the regimes every recorded benchmark ran (the op's
    # cost depends on the rates only, not on which model made them).
    table = timing.error_probabilities([0.53, 0.50], model="static")
    return [
        ("zero", torch.zeros(32, dtype=torch.float64), 0),
        ("0.53 V, bits 29-31 protected", table[0], 0xE0000000),
        ("0.50 V, unprotected", table[1], 0),
        ("heavy: 1e-2 on every bit", torch.full((32,), 1e-2, dtype=torch.float64), 0),
    ]


def mobilenet_v2_gemms(images: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """(layer name, (G, M, K, N)) of every conv/linear of torchvision's
    MobileNetV2 on `images` 224x224 images, as pyvs lowers them."""
    return models.gemm_shapes(torchvision.models.mobilenet_v2(), torch.zeros(images, 3, 224, 224))


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat, warmup=1):
    """Best wall time of `repeat` runs after `warmup` runs, seconds."""
    for _ in range(warmup):
        result = fn()
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, result


def clean_gemms(device):
    """Exact clean int GEMMs of the device: name -> fn(a3 int8 [G,M,K], w3 [G,K,N]) -> a thunk
    to time. torch._int_mm gets its operands as the op hands them over (zero-padded to
    cuBLASLt's shape rules, weights column-major), prepared outside the timing."""
    def int_mm(a3, w3):
        ops = [torch.ops.pyvs._int_mm_operands(a, w) for a, w in zip(a3, w3)]
        return lambda: [torch._int_mm(ap, wp) for ap, wp in ops]

    def float32(a3, w3):  # pyvs's own: float32 BLAS in exact K-chunks
        return lambda: torch.ops.pyvs._clean_gemm(a3, w3, 32, 256, "float32")

    if device == "cuda":
        return {"torch._int_mm": int_mm}
    return {"torch._int_mm": int_mm, "exact float32 BLAS": float32}


def best_clean(a, w, dev, repeat):
    """(seconds, name) of the fastest clean GEMM of the device on (a, w)."""
    return min((timed(f(a, w), dev, repeat)[0], n) for n, f in clean_gemms(dev).items())


def inputs(G, M, K, N, device, gen):
    # int8 activations, so that torch._int_mm runs on exactly the same operands
    a = torch.randint(-128, 128, (G, M, K), generator=gen, dtype=torch.int16).to(torch.int8)
    w = torch.randint(-128, 128, (G, K, N), generator=gen, dtype=torch.int16).to(torch.int8)
    # column-major weights, as the layers hand them over (the op copies others)
    return a.to(device), w.to(device).transpose(1, 2).contiguous().transpose(1, 2)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=None,
                    help="images per MobileNetV2 batch (default: 32 on CUDA, 2 on CPU)")
    ap.add_argument("--big", type=int, default=None,
                    help="size of the square GEMM (default: 4096 on CUDA, 2048 on CPU)")
    ap.add_argument("--repeat", type=int, default=None, help="best of N (default: 5 CUDA, 2 CPU)")
    ap.add_argument("--simple-max-macs", type=float, default=None,
                    help="skip the simple kernel above this many MACs (default: 1e12 CUDA, 2e10 CPU)")
    ap.add_argument("--reference-max-macs", type=float, default=2e7,
                    help="run the pure-PyTorch reference up to this many MACs (default: 2e7)")
    ap.add_argument("--max-events", type=float, default=None,
                    help="skip (shape, regime) pairs expecting more events (default: 1e10 CUDA, 3e7 CPU)")
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()
    cuda = args.device == "cuda"
    args.images = args.images or (32 if cuda else 2)
    args.big = args.big or (4096 if cuda else 2048)
    args.repeat = args.repeat or (5 if cuda else 2)
    args.simple_max_macs = args.simple_max_macs or (1e12 if cuda else 2e10)
    args.max_events = args.max_events or (1e10 if cuda else 3e7)
    return args


def picked_shapes(layers, big):
    """The big square GEMM and one MobileNetV2 layer of each kind: first conv,
    depthwise, first and last pointwise, classifier."""
    by_kind = {}
    for name, (G, M, K, N) in layers:
        kind = ("depthwise 3x3" if G > 1 else "classifier" if name == "classifier.1" else
                "first conv 3x3" if K == 27 else "pointwise 1x1")
        by_kind.setdefault(kind, []).append((name, (G, M, K, N)))
    return [(f"{big}^3", (1, big, big, big)), by_kind["first conv 3x3"][0], by_kind["depthwise 3x3"][0],
            by_kind["pointwise 1x1"][0], by_kind["pointwise 1x1"][-1], by_kind["classifier"][0]]


def shape_rows(args, shapes, gen):
    """One table row per (shape, regime): every path timed and checked equal."""
    dev, repeat = args.device, args.repeat
    lines = []
    for name, (G, M, K, N) in shapes:
        a, w = inputs(G, M, K, N, dev, gen)
        macs = G * M * K * N
        t_clean, clean_name = best_clean(a, w, dev, repeat)
        for rname, p, protect in regimes():
            if macs * float(p.sum()) > args.max_events:
                continue
            p = p.to(dev)
            kw = dict(protect=protect, seed=1, layer=3)
            run = lambda impl: lambda: pyvs.systolic_matmul(a, w, p, impl=impl, **kw)  # noqa: E731
            t_fast, fast = timed(run("fast"), dev, repeat)
            t_auto, auto = timed(run("auto"), dev, repeat)
            assert torch.equal(fast[0], auto[0]) and torch.equal(fast[1], auto[1]), "fast != auto"
            t_simple = t_ref = None
            if macs <= args.simple_max_macs:
                t_simple, simple = timed(run("simple"), dev, 1, warmup=0)
                assert torch.equal(fast[0], simple[0]) and torch.equal(fast[1], simple[1]), "fast != simple"
            if macs <= args.reference_max_macs:
                t_ref, ref = timed(lambda: reference.systolic_matmul(a.cpu(), w.cpu(), p.cpu(), **kw),
                                   "cpu", 1, warmup=0)
                assert torch.equal(fast[0].cpu(), ref[0]) and torch.equal(fast[1].cpu(), ref[1]), \
                    "fast != reference"
            row = (f"| {name} ({G}, {M}, {K}, {N}) | {rname} | {int(fast[1].sum())} | {t_fast * 1e3:.3f} ms | "
                   f"{t_clean * 1e3:.3f} ms ({clean_name}) | {t_fast / t_clean:.2f} | "
                   f"{'-' if t_simple is None else f'{t_simple / t_clean:.2f}'} | {t_auto / t_clean:.2f} | "
                   f"{'-' if t_ref is None else f'{t_ref / t_fast:.0f}'} |")
            print(row, flush=True)
            lines.append(row)
    return lines


def network_rows(args, layers, gen):
    """The whole network: every layer's GEMM, summed, per regime."""
    dev, repeat = args.device, args.repeat
    data = [inputs(*s, dev, gen) for _, s in layers]
    t_clean = sum(best_clean(a, w, dev, repeat)[0] for a, w in data)
    net_macs = sum(G * M * K * N for _, (G, M, K, N) in layers)
    lines = []
    for rname, p, protect in regimes():
        if net_macs * float(p.sum()) > args.max_events * 10:
            continue
        p = p.to(dev)
        kw = dict(protect=protect, seed=1, layer=3)
        t_auto = sum(timed(lambda: pyvs.systolic_matmul(a, w, p, impl="auto", **kw), dev, repeat)[0]
                     for a, w in data)
        t_simple = sum(timed(lambda: pyvs.systolic_matmul(a, w, p, impl="simple", **kw), dev, 1, 0)[0]
                       for a, w in data)
        row = (f"| all {len(layers)} MobileNetV2 GEMMs, {args.images} images | {rname} | | "
               f"{t_auto * 1e3:.2f} ms (auto) | {t_clean * 1e3:.2f} ms | {t_auto / t_clean:.2f} (auto) | "
               f"{t_simple / t_clean:.2f} | {t_auto / t_clean:.2f} | |")
        print(row, flush=True)
        lines.append(row)
    return lines


def main():
    args = parse_args()
    layers = mobilenet_v2_gemms(args.images)
    gen = torch.Generator().manual_seed(0)
    head = ("| shape (G, M, K, N) | errors | events | fast path | clean GEMM | fast / clean | "
            "simple / clean | auto / clean | reference / fast |")
    print(head)
    lines = [head, "|" + "---|" * 9]
    lines += shape_rows(args, picked_shapes(layers, args.big), gen)
    lines += network_rows(args, layers, gen)
    notes = ("Times are the best of several runs; ratios divide by the clean exact int GEMM of the same "
             "device measured in the same run (int8 x int8; torch._int_mm with its operands padded to "
             "cuBLASLt's shape rules and the weights column-major, as the op hands them over). 'simple' "
             "is the one-output-at-a-time kernel, 'auto' the op's default choice; '-' = not run at that "
             "size; regimes with too many events for the device are left out.")
    benchlib.report(benchlib.title("scripts/bench_op.py", args.device), notes, lines, args.append)


if __name__ == "__main__":
    main()
