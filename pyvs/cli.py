"""The ``pyvs`` command line (also ``python -m pyvs``).

Sub-commands only parse arguments, call library functions and print; the
work is in the modules they name.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch


def _demo(args: argparse.Namespace) -> int:
    """A small GEMM on the simulated array at one error rate: prints the
    injected and corrected counts per accumulator bit."""
    from .ops import systolic_matmul

    gen = torch.Generator().manual_seed(args.seed)
    a = torch.randint(0, 256, (args.m, args.k), generator=gen, dtype=torch.int16).to(torch.uint8)
    w = torch.randint(-128, 128, (args.k, args.n), generator=gen, dtype=torch.int16).to(torch.int8)
    W = args.acc_bits
    p = torch.full((W,), args.p, dtype=torch.float64)
    protect = ((1 << args.protect_msbs) - 1) << (W - args.protect_msbs) if args.protect_msbs else 0
    exact = a.long() @ w.long()
    t0 = time.perf_counter()
    out, stats = systolic_matmul(a, w, p, protect=protect, seed=args.seed, rows=args.rows)
    dt = time.perf_counter() - t0
    macs = args.m * args.k * args.n
    print(f"systolic matmul {args.m}x{args.k}x{args.n} (uint8 x int8), {W}-bit accumulator, "
          f"{args.rows}-row array, p = {args.p:g} per bit per MAC, "
          f"protected bits: {bin(protect)} ; {dt * 1e3:.1f} ms")
    print(f"{'bit':>4} {'injected':>10} {'corrected':>10}")
    for b in range(W):
        if stats[0, b] or stats[1, b]:
            print(f"{b:>4} {int(stats[0, b]):>10} {int(stats[1, b]):>10}")
    inj, cor = int(stats[0].sum()), int(stats[1].sum())
    print(f"total: {inj} injected, {cor} corrected over {macs} MACs x {W} bits "
          f"(expected {macs * W * args.p:.1f} events)")
    wrong = int((out.long() != exact).sum())
    print(f"outputs that differ from the exact product: {wrong} of {out.numel()}")
    return 0


def _grid(vmin: float, vmax: float, step: float) -> list:
    if not (step > 0 and vmax >= vmin):
        raise SystemExit(f"pyvs: bad voltage grid: --vmin {vmin} --vmax {vmax} --step {step}")
    n = int(round((vmax - vmin) / step))
    return [round(vmin + i * step, 6) for i in range(n + 1)]


def _timing(args: argparse.Namespace) -> int:
    """Per-bit error-probability table on a voltage grid: printed, saved as
    JSON, and drawn as a heatmap."""
    from . import timing
    from .plots import error_heatmap

    opts = {k: getattr(args, k) for k in ("guard_band", "vth", "alpha", "sigma_gate")
            if getattr(args, k) is not None}
    try:
        table = timing.make_table(_grid(args.vmin, args.vmax, args.step), args.freq,
                                  args.acc_bits, **opts)
    except ValueError as e:
        raise SystemExit(f"pyvs timing: {e}")
    tech = table.params["tech"]
    print(f"P(bit b of one MAC's {table.acc_bits}-bit accumulator misses the clock), "
          f"{table.freq_ghz} GHz; Vth={tech['vth']} V, alpha={tech['alpha']}, "
          f"guard-band={tech['guard_band']}, sigma_gate={tech['sigma_gate']}, uniform operands")
    print("bit " + " ".join(f"{v:>8.2f}V" for v in table.voltages))
    p = table.tensor()
    for b in range(table.acc_bits):
        print(f"{b:>3} " + " ".join(f"{float(x):>9.2e}" for x in p[:, b]))
    if args.out:
        timing.save_table(table, args.out)
        print(f"table: {args.out}")
    if args.plot:
        error_heatmap(table, args.plot)
        print(f"heatmap: {args.plot}")
    return 0


def _fmt_acc(row: dict, key: str) -> str:
    return f"{100 * row[key]:6.2f} % [{100 * row[key + '_lo']:.2f}, {100 * row[key + '_hi']:.2f}]"


def _run(args: argparse.Namespace) -> int:
    """int8 MobileNetV2 on the simulated array: clean, then with timing errors
    at one voltage; prints accuracies, golden agreement and error counts."""
    from . import data, models, timing
    from .evaluate import evaluate
    from .nn import FaultConfig, convert, set_faults

    try:
        ds = data.imagenet_dataset(args.data, args.limit)
        qmodel = models.mobilenet_v2_int8(args.weights)
        p = timing.error_probabilities([args.voltage], args.freq, args.acc_bits)[0]
    except ValueError as e:
        raise SystemExit(f"pyvs run: {e}")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = convert(qmodel, acc_bits=args.acc_bits).to(args.device)
    W = args.acc_bits
    protect = args.protect if args.protect is not None else (
        ((1 << args.protect_msbs) - 1) << (W - args.protect_msbs) if args.protect_msbs else 0)
    batches = data.decoded(ds, args.batch_size)
    print(f"int8 MobileNetV2 on a {args.rows}-row systolic array, {W}-bit accumulators; "
          f"{len(ds)} images from {args.data}; device {args.device}")
    clean = evaluate(model, batches, device=args.device, desc="clean")
    set_faults(model, FaultConfig(p, protect=protect, seed=args.seed, rows=args.rows))
    faulty = evaluate(model, batches, golden=clean["pred"], device=args.device,
                      desc=f"{args.voltage} V")
    erring = [b for b in range(W) if p[b] > 0]
    print(f"timing model at {args.voltage} V, {args.freq} GHz: bits {erring[0] if erring else '-'}"
          f"..{erring[-1] if erring else '-'} err, max P = {float(p.max()):.2e} per MAC; "
          f"protected bits: {[b for b in range(W) if protect >> b & 1] or 'none'}")
    print(f"clean   top-1 {_fmt_acc(clean, 'top1')}  top-5 {_fmt_acc(clean, 'top5')}  "
          f"({clean['seconds']:.1f} s, {clean['images_per_s']:.1f} img/s)")
    print(f"faulty  top-1 {_fmt_acc(faulty, 'top1')}  top-5 {_fmt_acc(faulty, 'top5')}  "
          f"({faulty['seconds']:.1f} s, {faulty['images_per_s']:.1f} img/s)")
    print(f"golden agreement (top-1) {_fmt_acc(faulty, 'agree')}")
    print(f"errors: {faulty['injected']} injected, {faulty['corrected']} corrected (Razor replays)")
    for b in range(W):
        i, c = faulty["injected_per_bit"][b], faulty["corrected_per_bit"][b]
        if i or c:
            print(f"  bit {b:>2}: {i:>12} injected {c:>12} corrected")
    return 0


def _floats(text: str) -> list:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"pyvs: {text!r} is not a comma-separated list of numbers")


def _sweep(args: argparse.Namespace) -> int:
    """MobileNetV2 int8 across voltages and protection strategies; resumable."""
    from . import data, models
    from .latency import ArrayConfig
    from .nn import convert
    from .sweep import sweep

    if args.full:
        voltages = [round(0.50 + 0.01 * i, 3) for i in range(41)]
        strategies, seeds, limit = ["none", "msb4", "msb8", "all", "auto"], [0, 1, 2], None
    else:
        voltages = _floats(args.voltages)
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        seeds, limit = [int(x) for x in _floats(args.seeds)], args.limit
    opts = {k: getattr(args, k) for k in ("guard_band", "vth", "alpha", "sigma_gate")
            if getattr(args, k) is not None}
    try:
        ds = data.imagenet_dataset(args.data, limit)
        qmodel = models.mobilenet_v2_int8(args.weights)
        model = convert(qmodel, acc_bits=args.acc_bits).to(args.device)
        batches = data.decoded(ds, args.batch_size)
        rows = sweep(model, batches, args.out, voltages, strategies, seeds, freq_ghz=args.freq,
                     acc_bits=args.acc_bits, budget=args.budget / 100.0,
                     array=ArrayConfig(args.rows, args.cols, args.freq, args.replay_cycles,
                                       batch=args.array_batch),
                     timing_options=opts, device=args.device,
                     meta={"model": "mobilenet_v2_int8", "data": os.path.abspath(args.data)})
    except ValueError as e:
        raise SystemExit(f"pyvs sweep: {e}")
    print(f"{len(rows)} points in {args.out}/results.csv and results.json")
    if not args.no_report:
        return _report(argparse.Namespace(results=args.out))
    return 0


def _report(args: argparse.Namespace) -> int:
    """Plots and a Markdown table from a sweep's results folder."""
    from .report import report
    try:
        paths = report(args.results)
    except ValueError as e:
        raise SystemExit(f"pyvs report: {e}")
    with open(paths[-1]) as f:
        print(f.read())
    print("wrote " + ", ".join(paths))
    return 0


def _model_args(p: argparse.ArgumentParser) -> None:
    """Arguments of the commands that run MobileNetV2 on ImageNet data."""
    p.add_argument("--data", required=True, metavar="DIR",
                   help="ImageNet sample folder (labels.csv) or ImageNet val/<wnid>/*.JPEG")
    p.add_argument("--weights", default=None, metavar="PTH",
                   help="state_dict of torchvision's int8 MobileNetV2 (default: torchvision download)")
    p.add_argument("--freq", type=float, default=0.7, help="clock, GHz (default: 0.7)")
    p.add_argument("--acc-bits", type=int, default=32, help="accumulator width, bits (default: 32)")
    p.add_argument("--rows", type=int, default=256, help="systolic array height (default: 256)")
    p.add_argument("--batch-size", type=int, default=50, help="images per batch (default: 50)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyvs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="one faulty GEMM; prints injected/corrected counts per bit")
    d.add_argument("--m", type=int, default=512, help="rows of a (default: 512)")
    d.add_argument("--k", type=int, default=1152, help="reduction length (default: 1152)")
    d.add_argument("--n", type=int, default=256, help="columns of w (default: 256)")
    d.add_argument("--p", type=float, default=1e-6,
                   help="error probability of every accumulator bit per MAC (default: 1e-6)")
    d.add_argument("--acc-bits", type=int, default=32, help="accumulator width W, bits (default: 32)")
    d.add_argument("--protect-msbs", type=int, default=8,
                   help="number of most significant bits with Razor correction (default: 8)")
    d.add_argument("--rows", type=int, default=256, help="systolic array height (default: 256)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    d.set_defaults(func=_demo)

    t = sub.add_parser("timing", help="per-bit timing-error probabilities versus supply voltage")
    t.add_argument("--vmin", type=float, default=0.5, help="lowest voltage, V (default: 0.5)")
    t.add_argument("--vmax", type=float, default=0.9, help="highest voltage, V (default: 0.9)")
    t.add_argument("--step", type=float, default=0.05, help="voltage step, V (default: 0.05)")
    t.add_argument("--freq", type=float, default=0.7, help="clock frequency, GHz (default: 0.7)")
    t.add_argument("--acc-bits", type=int, default=32, help="accumulator width, bits (default: 32)")
    t.add_argument("--guard-band", type=float, default=None,
                   help="timing margin at 0.9 V, fraction of the worst path (default: 1.0)")
    t.add_argument("--vth", type=float, default=None, help="threshold voltage, V (default: 0.30)")
    t.add_argument("--alpha", type=float, default=None, help="alpha-power index (default: 1.3)")
    t.add_argument("--sigma-gate", type=float, default=None,
                   help="sigma/mu of each gate delay (default: 0.05)")
    t.add_argument("--out", default="error_table.json", metavar="JSON",
                   help="table file to write (default: error_table.json; '' to skip)")
    t.add_argument("--plot", default="error_table.png", metavar="PNG",
                   help="heatmap to write (default: error_table.png; '' to skip)")
    t.set_defaults(func=_timing)

    r = sub.add_parser("run", help="int8 MobileNetV2 with timing errors at one voltage")
    _model_args(r)
    r.add_argument("--voltage", type=float, default=0.5, help="supply voltage, V (default: 0.5)")
    r.add_argument("--protect-msbs", type=int, default=0,
                   help="Razor-protect the N most significant accumulator bits (default: 0)")
    r.add_argument("--protect", type=lambda v: int(v, 0), default=None, metavar="MASK",
                   help="explicit protect bit mask, e.g. 0xff000000 (overrides --protect-msbs)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    r.add_argument("--limit", type=int, default=None, help="use the first N images only")
    r.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    r.set_defaults(func=_run)

    sw = sub.add_parser("sweep", help="accuracy, latency and energy across voltages and protection")
    _model_args(sw)
    sw.add_argument("--out", default="results", help="results folder; resumed if present (default: results)")
    sw.add_argument("--voltages", default="0.9,0.6,0.53,0.51",
                    help="comma-separated volts (default: 0.9,0.6,0.53,0.51)")
    sw.add_argument("--strategies", default="none,all,auto",
                    help="comma-separated: none, all, msbN, 0xMASK, auto (default: none,all,auto)")
    sw.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    sw.add_argument("--budget", type=float, default=0.3,
                    help="accuracy-loss budget of 'auto', points of top-1 (default: 0.3)")
    sw.add_argument("--limit", type=int, default=100, help="first N images (default: 100)")
    sw.add_argument("--full", action="store_true",
                    help="GPU-sized grid: all images, 0.50-0.90 V step 0.01, 5 strategies, 3 seeds")
    sw.add_argument("--cols", type=int, default=256, help="array columns (default: 256)")
    sw.add_argument("--replay-cycles", type=int, default=1, help="stall per corrected error (default: 1)")
    sw.add_argument("--array-batch", type=int, default=1,
                    help="images sharing each weight load in the latency/energy model (default: 1)")
    sw.add_argument("--guard-band", type=float, default=None, help="timing model option (default: 1.0)")
    sw.add_argument("--vth", type=float, default=None, help="timing model option, V (default: 0.30)")
    sw.add_argument("--alpha", type=float, default=None, help="timing model option (default: 1.3)")
    sw.add_argument("--sigma-gate", type=float, default=None, help="timing model option (default: 0.05)")
    sw.add_argument("--no-report", action="store_true", help="skip the plots and table")
    sw.set_defaults(func=_sweep)

    rp = sub.add_parser("report", help="plots and a Markdown table from a sweep's results folder")
    rp.add_argument("results", help="results folder of pyvs sweep")
    rp.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
