"""pyvs: how far can a systolic-array DNN accelerator's supply voltage drop,
and which accumulator bits must Razor protect? (``pyvs`` or ``python -m pyvs``)

Sub-commands only check arguments, call library functions and print; the
work is in the modules they name. Every argument is checked before any data
or model is loaded, and a user's mistake ends the command with one line on
stderr and exit status 2 (``--debug`` or ``PYVS_DEBUG=1`` shows the
traceback instead).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import torch

from .checks import integer, number

_TIMING_OPTIONS = (  # (name, help): pyvs.timing.TechParams fields the commands expose
    ("guard_band", "timing margin at 0.9 V, fraction of the worst path (default: 1.0)"),
    ("vth", "threshold voltage, V (default: 0.30)"),
    ("alpha", "alpha-power index (default: 1.3)"),
    ("sigma_gate", "sigma/mu of each gate delay (default: 0.05)"),
)
MAX_GRID = 10_000  # voltages a `pyvs timing` grid may hold
_PLOT_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


class UserError(Exception):
    """A mistake in what the user asked for: one line, no traceback."""


# ---- argument checks, all made before anything is loaded ----------------------

def _timing_args(p: argparse.ArgumentParser, with_model: bool) -> None:
    """The timing model's options; ``with_model``: the command runs a model,
    so the default 'event' model can capture its operands."""
    from .timing import DEFAULT_MODEL, NAMED_MODELS
    names = [n for n in NAMED_MODELS if with_model or n != "event"]
    default = DEFAULT_MODEL if with_model else "event-uniform"
    p.add_argument("--timing-model", metavar="{" + ",".join(names) + "}", default=default,
                   help="; ".join(f"{n}: {NAMED_MODELS[n]}" for n in names) + f" (default: {default})")
    for name, text in _TIMING_OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), type=float, default=None, help=text)
    if with_model:
        p.add_argument("--calibration-images", type=int, default=32,
                       help="'event': images whose operand pairs are captured (default: 32)")
        p.add_argument("--pairs-per-layer", type=int, default=4096,
                       help="'event': operand pairs kept per layer (default: 4096)")


def _timing_options(args: argparse.Namespace) -> dict:
    """The timing model's options from the command line, checked (the
    technology overrides; the model is args.timing_model)."""
    from .timing import TimingOptions, named_model
    from .timing import NAMED_MODELS
    opts = {name: getattr(args, name) for name, _ in _TIMING_OPTIONS if getattr(args, name) is not None}
    known = [n for n in NAMED_MODELS if hasattr(args, "calibration_images") or n != "event"]
    if args.timing_model not in known:
        raise UserError(f"--timing-model {args.timing_model!r} is not one of {', '.join(known)}")
    TimingOptions.from_kwargs(named_model(args.timing_model, opts))  # raises on a bad value
    for name in ("calibration_images", "pairs_per_layer"):
        if hasattr(args, name):
            integer(getattr(args, name), "--" + name.replace("_", "-"), 2 if name == "calibration_images" else 1)
    return opts


def _protect_mask(args: argparse.Namespace) -> int:
    from .accumulator import check_mask, msb_mask
    if getattr(args, "protect", None) is not None:
        return check_mask(args.protect, args.acc_bits, "--protect")
    try:
        return msb_mask(args.protect_msbs, args.acc_bits)
    except (TypeError, ValueError):
        raise UserError(f"--protect-msbs must be between 0 and --acc-bits ({args.acc_bits}), "
                        f"got {args.protect_msbs}") from None


def _device(name: str) -> str:
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"--device {name!r} is not a device; use cpu or cuda (cuda:N for GPU N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name!r}: pyvs runs on cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: torch sees no CUDA GPU on this machine")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    return name


def _writable_file(path: str, what: str, suffixes=None) -> None:
    if suffixes and not path.lower().endswith(suffixes):
        raise UserError(f"{what} {path!r}: the file name must end in one of {', '.join(suffixes)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK) or os.path.isdir(path):
        raise UserError(f"{what} {path!r} cannot be written (no such folder, or not writable)")


def _check_model_args(args: argparse.Namespace) -> None:
    """The arguments shared by run and sweep."""
    from .accumulator import check_width
    if not os.path.isdir(args.data):
        raise UserError(f"--data {args.data!r} does not exist or is not a folder")
    if args.weights is not None and not os.path.isfile(args.weights):
        raise UserError(f"--weights {args.weights!r} does not exist")
    args.acc_bits = check_width(args.acc_bits, "--acc-bits")
    number(args.freq, "--freq (GHz)", positive=True)
    integer(args.rows, "--rows", 1)
    integer(args.batch_size, "--batch-size", 1)
    if args.limit is not None:
        integer(args.limit, "--limit", 1)
    if args.threads:
        integer(args.threads, "--threads", 1)
    _device(args.device)
    args.timing_options = _timing_options(args)


# ---- commands ------------------------------------------------------------------

def _demo(args: argparse.Namespace) -> int:
    """A small GEMM on the simulated array at one error rate: prints the
    injected and corrected counts per accumulator bit."""
    from .accumulator import check_width
    from .ops import seed64, systolic_matmul

    for name in ("m", "k", "n", "rows"):
        integer(getattr(args, name), f"--{name}", 1)
    W = check_width(args.acc_bits, "--acc-bits")
    number(args.p, "--p (probability per bit per MAC)", minimum=0.0, maximum=1.0)
    seed64(args.seed)
    protect = _protect_mask(args)
    if args.m * args.k * args.n > 1e10:
        raise UserError(f"--m x --k x --n = {args.m * args.k * args.n:.3g} MACs is more than a demo should run (1e10)")
    gen = torch.Generator().manual_seed(args.seed)
    a = torch.randint(0, 256, (args.m, args.k), generator=gen, dtype=torch.int16).to(torch.uint8)
    w = torch.randint(-128, 128, (args.k, args.n), generator=gen, dtype=torch.int16).to(torch.int8)
    p = torch.full((W,), args.p, dtype=torch.float64)
    t0 = time.perf_counter()
    out, stats = systolic_matmul(a, w, p, protect=protect, seed=args.seed, rows=args.rows)
    dt = time.perf_counter() - t0
    macs = args.m * args.k * args.n
    print(f"systolic matmul {args.m}x{args.k}x{args.n} (uint8 x int8), {W}-bit accumulator, "
          f"{args.rows}-row array, p = {args.p:g} per bit per MAC, "
          f"protected bits: {bin(protect)} ; {dt * 1e3:.1f} ms")
    _print_counts(stats[0].tolist(), stats[1].tolist())
    print(f"total: {int(stats[0].sum())} injected, {int(stats[1].sum())} corrected over {macs} MACs x {W} "
          f"bits (expected {macs * W * args.p:.1f} events)")
    wrong = int((out.long() != a.long() @ w.long()).sum())
    print(f"outputs that differ from the exact product: {wrong} of {out.numel()}")
    return 0


def _print_counts(injected: list, corrected: list) -> None:
    print(f"{'bit':>4} {'injected':>12} {'corrected':>12}")
    for b, (i, c) in enumerate(zip(injected, corrected)):
        if i or c:
            print(f"{b:>4} {i:>12} {c:>12}")


def _grid(vmin: float, vmax: float, step: float) -> list:
    vmin, vmax = number(vmin, "--vmin (V)"), number(vmax, "--vmax (V)")
    step = number(step, "--step (V)", positive=True)
    if vmax < vmin:
        raise UserError(f"--vmax {vmax} is below --vmin {vmin}")
    n = int(round((vmax - vmin) / step))
    if n + 1 > MAX_GRID:
        raise UserError(f"--vmin {vmin} --vmax {vmax} --step {step} is a grid of {n + 1} voltages; "
                        f"at most {MAX_GRID}")
    return [round(vmin + i * step, 6) for i in range(n + 1)]


def _timing(args: argparse.Namespace) -> int:
    """Per-bit error-probability table on a voltage grid: printed, saved as
    JSON, and drawn as a heatmap."""
    from . import timing
    from .plots import error_heatmap

    voltages = _grid(args.vmin, args.vmax, args.step)
    if args.out:
        _writable_file(args.out, "--out")
    if args.plot:
        _writable_file(args.plot, "--plot", _PLOT_FORMATS)
    table = timing.make_table(voltages, args.freq, args.acc_bits,
                              **timing.named_model(args.timing_model, _timing_options(args)))
    tech = table.params["tech"]
    what = "is captured wrong" if args.timing_model.startswith("event") else "misses the clock"
    print(f"P(bit b of one MAC's {table.acc_bits}-bit accumulator {what}), {table.freq_ghz} GHz, "
          f"{args.timing_model} model; Vth={tech['vth']} V, alpha={tech['alpha']}, "
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


def _fmt(value: float, lo: float, hi: float) -> str:
    return f"{100 * value:6.2f} % [{100 * lo:.2f}, {100 * hi:.2f}]"


def _world(args: argparse.Namespace):
    """This process's place under torchrun (one process without it); every
    rank must have been given the same arguments."""
    from .distributed import World
    world = World.from_env(args.device)
    args.device = world.device(args.device)
    world.check_same("arguments", {k: v for k, v in vars(args).items() if k not in ("func", "device")})
    return world


def _model_and_data(args: argparse.Namespace, limit, world):
    """The converted int8 MobileNetV2 on the device, and this rank's shard of
    the images decoded: (model, batches, global index of its first image)."""
    from torch.utils.data import Subset

    from . import data, models
    from .nn import convert

    if args.threads:
        torch.set_num_threads(args.threads)
    ds = data.imagenet_dataset(args.data, limit)
    start, end = world.shard(len(ds))
    batches = data.decoded(Subset(ds, range(start, end)), args.batch_size, progress=world.is_main)
    model = convert(models.mobilenet_v2_int8(args.weights), acc_bits=args.acc_bits).to(args.device)
    return model, batches, start


def _run(args: argparse.Namespace) -> int:
    """int8 MobileNetV2 on the simulated array: clean, then with timing errors
    at one voltage; prints accuracies, golden agreement, error counts and costs."""
    from . import timing
    from .accumulator import describe_mask
    from .experiment import Experiment, per_bit_max
    from .latency import ArrayConfig
    from .ops import seed64

    _check_model_args(args)
    timing.check_voltages([args.voltage], timing.TimingOptions.from_kwargs(args.timing_options).tech)
    protect = _protect_mask(args)
    seed64(args.seed)
    if args.json:
        _writable_file(args.json, "--json")
    world = _world(args)
    model, batches, first = _model_and_data(args, args.limit, world)
    exp = Experiment(model, batches, array=ArrayConfig(rows=args.rows, freq_ghz=args.freq), device=args.device,
                     progress=world.is_main, world=world, first_image=first)
    n = exp.n_images
    if world.is_main:
        print(f"int8 MobileNetV2 on a {args.rows}-row systolic array, {args.acc_bits}-bit accumulators; "
              f"{n} images from {args.data}; device {args.device}"
              + (f" on each of {world.size} ranks" if world.size > 1 else ""))
    table = exp.error_table([args.voltage], args.freq, args.timing_model, args.timing_options,
                            args.calibration_images, args.pairs_per_layer)
    p = table.rates(args.voltage)
    r = exp.point(args.voltage, p, protect, args.seed, "run")
    if not world.is_main:
        return 0
    clean = exp.golden.clean
    erring = [b for b in range(args.acc_bits) if per_bit_max(p)[b] > 0]
    print(f"{args.timing_model} timing model at {args.voltage} V, {args.freq} GHz: "
          f"bits {erring[0] if erring else '-'}"
          f"..{erring[-1] if erring else '-'} err, max P = {r.max_p:.2e} per MAC; "
          f"protected bits: {describe_mask(protect)}")
    print(f"clean   top-1 {_fmt(clean['top1'], clean['top1_lo'], clean['top1_hi'])}  "
          f"top-5 {_fmt(clean['top5'], clean['top5_lo'], clean['top5_hi'])}  "
          f"({clean['seconds']:.1f} s, {clean['images_per_s']:.1f} img/s)")
    print(f"faulty  top-1 {_fmt(r.top1, r.top1_lo, r.top1_hi)}  top-5 {_fmt(r.top5, r.top5_lo, r.top5_hi)}  "
          f"({r.seconds:.1f} s, {n / r.seconds if r.seconds else float('inf'):.1f} img/s)")
    print(f"golden agreement (top-1) {_fmt(r.agree, r.agree_lo, r.agree_hi)}")
    print(f"errors: {r.injected} injected, {r.corrected} corrected (Razor replays)")
    _print_counts(r.injected_per_bit, r.corrected_per_bit)
    print(f"latency overhead {100 * r.latency_overhead:.3g} % (one stall per error: "
          f"{100 * r.latency_overhead_bound:.3g} %), energy saving {100 * r.energy_saving:.1f} % "
          f"against {exp.workload.energy.v_nominal} V (one image per weight load, {args.freq} GHz)")
    if args.json:
        from .files import atomic_write
        atomic_write(args.json, json.dumps({"clean": clean, "point": dataclasses.asdict(r)}, indent=1))
        print(f"results: {args.json}")
    return 0


def _numbers(text: str, what: str, kind=float) -> list:
    """A comma-separated list of numbers (integers for kind=int), strictly."""
    try:
        values = [kind(x) if kind is float else int(x, 10) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what} {text!r} is not a comma-separated list of "
                        f"{'integers' if kind is int else 'numbers'}") from None
    if not values:
        raise UserError(f"{what} is empty")
    return values


def _sweep_grid(args: argparse.Namespace):
    """(voltages, strategies, seeds, limit) of the sweep, checked."""
    from .sweep import FULL_GRID, check_grid
    from .timing import TimingOptions
    if args.full:
        voltages, strategies, seeds, limit = (FULL_GRID["voltages"], FULL_GRID["strategies"],
                                              FULL_GRID["seeds"], args.limit)
    else:
        voltages = _numbers(args.voltages, "--voltages")
        strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
        seeds, limit = _numbers(args.seeds, "--seeds", int), args.limit
    budget = number(args.budget, "--budget (points of top-1)")
    if budget < 0:
        raise UserError(f"--budget must be >= 0 points of top-1, got {args.budget}")
    check_grid(voltages, strategies, budget / 100.0, args.acc_bits,
               TimingOptions.from_kwargs(args.timing_options).tech)
    return voltages, strategies, seeds, limit


def _sweep(args: argparse.Namespace) -> int:
    """MobileNetV2 int8 across voltages and protection strategies; resumable."""
    from .latency import ArrayConfig
    from .results import load_results
    from .sweep import check_writable, sweep

    _check_model_args(args)
    voltages, strategies, seeds, limit = _sweep_grid(args)
    array = ArrayConfig(args.rows, integer(args.cols, "--cols", 1), args.freq,
                        integer(args.replay_cycles, "--replay-cycles", 0),
                        batch=integer(args.array_batch, "--array-batch", 1))
    world = _world(args)
    world.on_main(lambda: check_writable(args.out))
    model, batches, first = _model_and_data(args, limit, world)
    try:
        rows = sweep(model, batches, args.out, voltages, strategies, seeds, freq_ghz=args.freq,
                     acc_bits=args.acc_bits, budget=args.budget / 100.0, array=array,
                     timing_options=args.timing_options, timing_model=args.timing_model,
                     calibration_images=args.calibration_images, pairs_per_layer=args.pairs_per_layer,
                     device=args.device,
                     meta={"model": "mobilenet_v2_int8", "data": os.path.abspath(args.data),
                           "weights": os.path.abspath(args.weights) if args.weights else "torchvision"},
                     world=world, first_image=first)
    except KeyboardInterrupt:
        if args.debug or os.environ.get("PYVS_DEBUG") or not world.is_main:
            raise
        done = len(load_results(args.out)[0]) if os.path.isdir(args.out) else 0
        print(f"pyvs sweep: interrupted; {done} finished points are saved in {args.out}/results.json; "
              "run the same command again to resume", file=sys.stderr)
        return 130
    if not world.is_main:
        return 0
    print(f"{len(rows)} points in {args.out}/results.csv and results.json")
    if not args.no_report:
        return _report(argparse.Namespace(results=args.out, latency_limit=args.latency_limit))
    return 0


def _slack(args: argparse.Namespace) -> int:
    """Guard-band x voltage: latency overhead with every erring bit
    protected, the lowest voltage per guard-band within the budgets, and the
    guard-band the paper's 0.5 V / 0.001 % point implies."""
    from . import slack
    from .experiment import Experiment
    from .latency import ArrayConfig
    from .sweep import check_writable

    _check_model_args(args)
    if args.timing_model != "event":
        raise UserError("pyvs slack maps the event-driven model on captured operands: use --timing-model event")
    gbs = _numbers(args.guard_bands, "--guard-bands")
    if any(g < 0 for g in gbs):
        raise UserError(f"--guard-bands must be >= 0, got {args.guard_bands}")
    voltages = _grid(args.vmin, args.vmax, args.step)
    from .timing import TimingOptions, check_voltages, named_model
    options = TimingOptions.from_kwargs(named_model("event", args.timing_options))
    check_voltages(voltages, options.tech)
    latency = number(args.latency_budget, "--latency-budget (%)", minimum=0.0) / 100.0
    top1 = number(args.top1_budget, "--top1-budget (points)", minimum=0.0) / 100.0
    below = integer(args.below, "--below", 1)
    world = _world(args)
    world.on_main(lambda: check_writable(args.out))
    model, batches, first = _model_and_data(args, args.limit, world)
    exp = Experiment(model, batches, array=ArrayConfig(rows=args.rows, freq_ghz=args.freq), device=args.device,
                     progress=world.is_main, world=world, first_image=first)
    timing = exp.layer_timing(options, args.calibration_images, args.pairs_per_layer)
    m = slack.slack_map(timing, exp.workload, gbs, voltages, args.freq)
    implied = slack.implied_guard_band(timing, exp.workload, args.freq)
    evaluated = _slack_evaluate(args, model, batches, first, world, m, latency, top1, below) if args.evaluate else None
    if world.is_main:
        _slack_outputs(args, m, slack.summary_rows(m, latency, top1, evaluated), implied, latency, options)
    return 0


def _slack_evaluate(args, model, batches, first, world, m, latency: float, top1: float, below: int) -> dict:
    """The 'auto' strategy measured at the ``below`` grid voltages under each
    guard-band's frontier, one resumable sweep per guard-band."""
    from .latency import ArrayConfig
    from .sweep import sweep
    evaluated = {}
    for g, low in zip(m.guard_bands, m.lowest_voltage(latency)):
        volts = [v for v in m.voltages if low is not None and v < low][-below:]
        if not volts:
            continue
        evaluated[g] = sweep(model, batches, os.path.join(args.out, f"gb{g:g}"), volts, ["auto"],
                             freq_ghz=args.freq, acc_bits=args.acc_bits, budget=top1,
                             array=ArrayConfig(rows=args.rows, freq_ghz=args.freq),
                             timing_options=dict(args.timing_options, guard_band=g), timing_model="event",
                             calibration_images=args.calibration_images, pairs_per_layer=args.pairs_per_layer,
                             device=args.device, progress=world.is_main, world=world, first_image=first,
                             meta={"model": "mobilenet_v2_int8", "data": os.path.abspath(args.data)})
    return evaluated


def _slack_outputs(args, m, summary, implied, latency: float, options) -> None:
    from .files import atomic_write
    from .plots import slack_heatmap
    from .slack import PAPER_POINT
    lowest = [r["lowest_v_all_protected"] for r in summary]
    auto = (f"; 'auto': measured on {args.limit} images within {args.top1_budget} points of top-1"
            if args.evaluate else "")
    print(f"lowest voltage with latency overhead <= {100 * latency:g} %; 'all': every erring bit protected "
          f"(outputs = the fault-free run's, so any top-1 budget holds){auto}; {args.freq} GHz, event model on "
          f"{args.calibration_images} calibration images")
    print(f"{'guard-band':>10} {'all':>6} {'overhead':>10} {'auto':>6}")
    for i, r in enumerate(summary):
        v = r["lowest_v_all_protected"]
        at = f"{100 * m.overhead[i, m.voltages.index(v)]:.3g} %" if v is not None else "-"
        auto = r.get("lowest_v_auto", "n/a") if args.evaluate else "-"
        print(f"{r['guard_band']:>10.3g} {v if v is not None else '-':>6} {at:>10} {str(auto):>6}")
    print(f"the paper's {PAPER_POINT[0]} V at {100 * PAPER_POINT[1]:g} % latency overhead implies a guard-band of "
          + (f"{implied:.3f}" if implied is not None else "more than 4") + f" (default {options.tech.guard_band})")
    doc = {"latency_budget": latency, "freq_ghz": args.freq, "timing": options.describe(),
           "calibration_images": args.calibration_images, "pairs_per_layer": args.pairs_per_layer,
           "top1_budget": args.top1_budget / 100.0, "summary": summary,
           "paper_point": list(PAPER_POINT), "implied_guard_band": implied,
           "map": m.as_dict()}
    atomic_write(os.path.join(args.out, "slack.json"), json.dumps(doc, indent=1))
    slack_heatmap(m, latency, lowest, implied, os.path.join(args.out, "slack.png"))
    print(f"wrote {args.out}/slack.json, {args.out}/slack.png")


def _report(args: argparse.Namespace) -> int:
    """Plots and a Markdown table from a sweep's results folder."""
    from .report import report
    limit = number(args.latency_limit, "--latency-limit (%)", minimum=0.0)
    paths = report(args.results, latency_limit=limit / 100.0)
    with open(paths[-1]) as f:
        print(f.read())
    print("wrote " + ", ".join(paths))
    return 0


# ---- the parser ------------------------------------------------------------------

def _model_args(p: argparse.ArgumentParser) -> None:
    """Arguments of the commands that run MobileNetV2 on ImageNet data."""
    p.add_argument("--data", required=True, metavar="DIR",
                   help="folder with labels.csv (e.g. the ImageNet sample) or ImageNet val/<wnid>/*.JPEG")
    p.add_argument("--weights", default=None, metavar="PTH",
                   help="state_dict of torchvision's int8 MobileNetV2 (default: torchvision download)")
    p.add_argument("--limit", type=int, default=None, help="use the first N images only (default: all)")
    p.add_argument("--freq", type=float, default=0.7, help="clock, GHz (default: 0.7)")
    p.add_argument("--acc-bits", type=int, default=32, help="accumulator width, bits (default: 32)")
    p.add_argument("--rows", type=int, default=256, help="systolic array height (default: 256)")
    p.add_argument("--batch-size", type=int, default=50, help="images per batch (default: 50)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    _timing_args(p, with_model=True)


def _demo_parser(sub) -> None:
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


def _timing_parser(sub) -> None:
    t = sub.add_parser("timing", help="per-bit timing-error probabilities versus supply voltage")
    t.add_argument("--vmin", type=float, default=0.5, help="lowest voltage, V (default: 0.5)")
    t.add_argument("--vmax", type=float, default=0.9, help="highest voltage, V (default: 0.9)")
    t.add_argument("--step", type=float, default=0.05, help="voltage step, V (default: 0.05)")
    t.add_argument("--freq", type=float, default=0.7, help="clock frequency, GHz (default: 0.7)")
    t.add_argument("--acc-bits", type=int, default=32, help="accumulator width, bits (default: 32)")
    _timing_args(t, with_model=False)
    t.add_argument("--out", default="error_table.json", metavar="JSON",
                   help="table file to write (default: error_table.json; '' to skip)")
    t.add_argument("--plot", default="error_table.png", metavar="PNG",
                   help="heatmap to write, .png/.pdf/.svg (default: error_table.png; '' to skip)")
    t.set_defaults(func=_timing)


def _run_parser(sub) -> None:
    r = sub.add_parser("run", help="int8 MobileNetV2 with timing errors at one voltage")
    _model_args(r)
    r.add_argument("--voltage", type=float, default=0.5, help="supply voltage, V (default: 0.5)")
    r.add_argument("--protect-msbs", type=int, default=0,
                   help="Razor-protect the N most significant accumulator bits (default: 0)")
    r.add_argument("--protect", type=lambda v: int(v, 0), default=None, metavar="MASK",
                   help="explicit protect bit mask, e.g. 0xff000000 (overrides --protect-msbs)")
    r.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    r.add_argument("--json", default=None, metavar="FILE",
                   help="also write the clean accuracies and the result row to this JSON file")
    r.set_defaults(func=_run)


def _sweep_parser(sub) -> None:
    sw = sub.add_parser("sweep", help="accuracy, latency and energy across voltages and protection")
    _model_args(sw)
    sw.add_argument("--out", default="results", help="results folder; resumed if present (default: results)")
    sw.add_argument("--voltages", default="0.9,0.6,0.53,0.52,0.51",
                    help="comma-separated volts (default: 0.9,0.6,0.53,0.52,0.51)")
    sw.add_argument("--strategies", default="none,all,auto",
                    help="comma-separated: none, all, msbN, 0xMASK, auto (default: none,all,auto)")
    sw.add_argument("--seeds", default="0", help="comma-separated integer seeds (default: 0)")
    sw.add_argument("--budget", type=float, default=0.3,
                    help="accuracy-loss budget of 'auto', points of top-1 (default: 0.3)")
    sw.add_argument("--full", action="store_true",
                    help="GPU-sized grid: 0.50-0.90 V step 0.01, 5 strategies, 3 seeds")
    sw.add_argument("--cols", type=int, default=256, help="array columns (default: 256)")
    sw.add_argument("--replay-cycles", type=int, default=1, help="stall per corrected error (default: 1)")
    sw.add_argument("--array-batch", type=int, default=1,
                    help="images sharing each weight load in the latency/energy model (default: 1)")
    sw.add_argument("--latency-limit", type=float, default=1.0,
                    help="flag points whose latency overhead exceeds this, %% (default: 1)")
    sw.add_argument("--no-report", action="store_true", help="skip the plots and table")
    sw.set_defaults(func=_sweep)


def _slack_parser(sub) -> None:
    sl = sub.add_parser("slack", help="guard-band x voltage: where errors begin and what they cost")
    _model_args(sl)
    sl.set_defaults(limit=32)
    sl.add_argument("--out", default="slack", help="output folder (default: slack)")
    sl.add_argument("--guard-bands", default="0,0.05,0.1,0.2,0.3,0.5,0.75,1,1.5",
                    help="comma-separated timing margins at 0.9 V, fractions of the worst path "
                         "(default: 0,0.05,0.1,0.2,0.3,0.5,0.75,1,1.5)")
    sl.add_argument("--vmin", type=float, default=0.4, help="lowest voltage, V (default: 0.4)")
    sl.add_argument("--vmax", type=float, default=0.9, help="highest voltage, V (default: 0.9)")
    sl.add_argument("--step", type=float, default=0.01, help="voltage step, V (default: 0.01)")
    sl.add_argument("--latency-budget", type=float, default=0.001,
                    help="latency overhead budget, %% (default: 0.001, the paper's)")
    sl.add_argument("--top1-budget", type=float, default=0.3,
                    help="top-1 loss budget of --evaluate, points (default: 0.3)")
    sl.add_argument("--evaluate", action="store_true",
                    help="also measure the 'auto' strategy below each guard-band's frontier on --limit "
                         "images (one resumable sweep per guard-band in OUT/gbG)")
    sl.add_argument("--below", type=int, default=2,
                    help="--evaluate: grid voltages under the frontier to measure (default: 2)")
    sl.set_defaults(func=_slack)


def _report_parser(sub) -> None:
    rp = sub.add_parser("report", help="plots and a Markdown table from a sweep's results folder")
    rp.add_argument("results", help="results folder of pyvs sweep")
    rp.add_argument("--latency-limit", type=float, default=1.0,
                    help="flag points whose latency overhead exceeds this, %% (default: 1)")
    rp.set_defaults(func=_report)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    lines = __doc__.splitlines()
    parser = argparse.ArgumentParser(prog="pyvs", description=lines[0] + "\n" + lines[1])
    parser.add_argument("--version", action="version", version=f"pyvs {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_demo_parser, _timing_parser, _run_parser, _sweep_parser, _slack_parser, _report_parser):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or bool(os.environ.get("PYVS_DEBUG"))
    # Under torchrun every rank runs this; its messages name the rank.
    size = int(os.environ.get("WORLD_SIZE", "1"))
    who = f"pyvs {args.command}" + (f" [rank {os.environ.get('RANK', '?')}/{size}]" if size > 1 else "")
    try:
        return args.func(args)
    except (UserError, ValueError, TypeError, OSError) as e:
        if debug:
            raise
        print(f"{who}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{who}: interrupted", file=sys.stderr)
        return 130
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
