"""pyvs: how far can a systolic-array DNN accelerator's supply voltage drop,
and which accumulator bits must Razor protect? (pyvs or python -m pyvs)

Sub-commands only parse, check, call library functions and print; the work,
and every file format, lives in the modules they name. Options shared by
sub-commands are declared once (argparse parent parsers), each with one
default, from :mod:`pyvs.hardware` where it is a hardware fact. Every
argument is checked before any data or model is loaded, and a user's
mistake ends the command with one line on stderr and exit status 2
(``--debug`` or ``PYVS_DEBUG=1`` shows the traceback instead).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from . import hardware
from .checks import integer, number
from .hardware import ON_ERRORS

_DETECTED = {"replay": "replayed (Razor)", "drop": "dropped (TE-Drop)"}

_TECH_OPTIONS = (  # (name, help): the TechParams fields the commands expose
    ("guard_band", "timing margin at the nominal supply, fraction of the worst path (default: 1.0)"),
    ("vth", "threshold voltage, V (default: 0.30)"),
    ("alpha", "alpha-power index (default: 1.3)"),
    ("sigma_gate", "sigma/mu of each gate delay (default: 0.05)"),
    ("sigma_vth_die", "die-to-die sigma of the threshold voltage that sets the corners, V (default: 0.02)"),
)
MAX_GRID = 10_000  # voltages a --vmin/--vmax/--step grid may hold
PAPER_MODEL = "mobilenet_v2_int8"  # the paper's network: torchvision's int8 MobileNetV2
_PLOT_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


class UserError(Exception):
    """A mistake in what the user asked for: one line, no traceback."""


# ---- the shared options: one declaration and one default each ---------------------

def _hardware_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("the simulated array (pyvs.hardware.ArrayConfig)")
    g.add_argument("--dataflow", default="ws", metavar="{" + ",".join(hardware.DATAFLOWS) + "}",
                   help="ws: weight-stationary, a partial sum per K-tile of --rows MACs; os: output-stationary, "
                        "one accumulation over the whole K per PE (default: %(default)s)")
    g.add_argument("--freq", type=float, default=hardware.CLOCK_GHZ, help="clock, GHz (default: %(default)s)")
    g.add_argument("--v-nominal", type=float, default=hardware.V_NOMINAL,
                   help="nominal supply: timing calibration and energy baseline, V (default: %(default)s)")
    g.add_argument("--rows", type=int, default=hardware.ROWS,
                   help="array height = MACs per K-tile (default: %(default)s)")
    g.add_argument("--cols", type=int, default=hardware.COLS, help="array width (default: %(default)s)")
    g.add_argument("--acc-bits", type=int, default=hardware.ACC_BITS,
                   help="accumulator width, bits (default: %(default)s)")
    g.add_argument("--replay-cycles", type=int, default=1, help="stall per Razor replay, cycles (default: 1)")
    g.add_argument("--array-batch", type=int, default=1,
                   help="images sharing each weight load in the latency/energy model (default: 1)")
    g.add_argument("--dvfs-switch-ns", type=float, default=hardware.ArrayConfig.dvfs_switch_ns,
                   help="wait for the supply at each change of voltage between layers (per-layer "
                        "schedules), ns (default: %(default)s)")
    return p


def _energy_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("energy model (pyvs.energy.EnergyParams)")
    g.add_argument("--power-gating", type=float, default=0.0,
                   help="fraction of an idle PE's leakage that power gating removes, 0..1 (default: 0, ungated)")
    g.add_argument("--supply-decap-nf", type=float, default=80.0,
                   help="decoupling capacitance of the array's supply, charged at each change of voltage, nF "
                        "(default: %(default)s)")
    return p


def _data_options(required: bool) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("model and data")
    g.add_argument("--data", required=required, metavar="DIR",
                   help="folder with labels.csv (e.g. the ImageNet sample) or ImageNet val/<wnid>/*.JPEG")
    g.add_argument("--model", default=PAPER_MODEL, metavar="NAME",
                   help=f"{PAPER_MODEL}: torchvision's int8 MobileNetV2, imported as it is (the default); or a "
                        "torchvision classifier (mobilenet_v2, mobilenet_v3_large, resnet18, resnet50, ...), "
                        "converted by post-training int8 on the data's first --ptq-images images")
    g.add_argument("--weights", default=None, metavar="PTH",
                   help="state_dict of the model (int8 for the default, float for the others; "
                        "default: torchvision's download)")
    g.add_argument("--ptq-images", type=int, default=32,
                   help="images that calibrate the post-training int8 of a float --model (default: 32)")
    g.add_argument("--limit", type=int, default=None, help="use the first N images only (default: all)")
    g.add_argument("--batch-size", type=int, default=50, help="images per batch (default: 50)")
    g.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    g.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    return p


def _timing_options() -> argparse.ArgumentParser:
    from .timing import DEFAULT_MODEL, NAMED_MODELS
    from .timing.datapath import ADDERS, DEFAULT_ADDER
    from .timing.params import CORNERS
    from .timing.spec import CALIBRATION_IMAGES, DEFAULT_INJECTION, INJECTIONS, PAIRS_PER_LAYER
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("timing model (pyvs.timing.TimingSpec)")
    g.add_argument("--timing-model", default=None, metavar="MODEL",
                   help="; ".join(f"{n}: {text}" for n, text in NAMED_MODELS.items())
                   + f" (default: {DEFAULT_MODEL} with --data, else event-uniform)")
    for name, text in _TECH_OPTIONS:
        g.add_argument("--" + name.replace("_", "-"), type=float, default=None, help=text)
    g.add_argument("--corner", choices=list(CORNERS), default="typical",
                   help="process corner of the die: Vth shifted by +3 (slow), 0 or -3 (fast) sigma-vth-die "
                        "(default: %(default)s)")
    g.add_argument("--adder", choices=list(ADDERS), default=DEFAULT_ADDER,
                   help="the accumulator's adder, on the same clock and gates: ripple-carry, or a "
                        "parallel-prefix kogge-stone or brent-kung (event models; default: %(default)s)")
    g.add_argument("--calibration-images", type=int, default=CALIBRATION_IMAGES,
                   help="event: images whose operand pairs are captured (default: %(default)s)")
    g.add_argument("--pairs-per-layer", type=int, default=PAIRS_PER_LAYER,
                   help="event: operand pairs kept per layer (default: %(default)s, about 4 minutes on 2 "
                        "cores: the onset then moves < 1 mV when they double; docs/timing.md)")
    g.add_argument("--injection", default=DEFAULT_INJECTION, metavar="{" + ",".join(INJECTIONS) + "}",
                   help="how a MAC's erring bits are drawn: " + "; ".join(f"{n}: {t}" for n, t in INJECTIONS.items())
                   + " (default: %(default)s)")
    return p


def _grid_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("voltage grid")
    g.add_argument("--vmin", type=float, default=0.40, help="lowest voltage, V (default: %(default)s)")
    g.add_argument("--vmax", type=float, default=0.90, help="highest voltage, V (default: %(default)s)")
    g.add_argument("--step", type=float, default=0.01, help="voltage step, V (default: %(default)s)")
    return p


def _budget_options() -> argparse.ArgumentParser:
    from .strategies import Budget
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("budgets (pyvs.strategies.Budget)")
    g.add_argument("--budget", type=float, default=round(100 * Budget().accuracy, 9),
                   help="largest loss of top-1 and of golden agreement, points (default: %(default)s)")
    g.add_argument("--latency-budget", type=float, default=round(100 * Budget().latency, 9),
                   help="largest latency overhead of a useful point, %% (default: %(default)s; the paper's: 0.001)")
    return p


def _fault_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("faults")
    g.add_argument("--protect-msbs", type=int, default=0,
                   help="Razor-protect the N most significant accumulator bits (default: 0)")
    g.add_argument("--protect", type=str, default=None, metavar="MASK",
                   help="explicit protect bit mask, e.g. 0xff000000 (overrides --protect-msbs)")
    g.add_argument("--on-error", default="replay", metavar="{" + ",".join(ON_ERRORS) + "}",
                   help="what a detected error on a protected bit does: replay (Razor: a stall) or drop "
                        "(TE-Drop: the MAC's update is skipped, no stall) (default: replay)")
    g.add_argument("--seed", type=int, default=0, help="random seed of the timing errors (default: 0)")
    return p


# ---- turning options into the library's objects, checked -----------------------------

def _array(args) -> "hardware.ArrayConfig":
    from .accumulator import check_width
    args.acc_bits = check_width(args.acc_bits, "--acc-bits")
    number(args.freq, "--freq (GHz)", positive=True)
    number(args.v_nominal, "--v-nominal (V)", positive=True)
    if args.dataflow not in hardware.DATAFLOWS:
        raise UserError(f"--dataflow {args.dataflow!r} is not one of {', '.join(hardware.DATAFLOWS)}")
    return hardware.ArrayConfig(dataflow=args.dataflow,
                                rows=integer(args.rows, "--rows", 1), cols=integer(args.cols, "--cols", 1),
                                freq_ghz=args.freq, v_nominal=args.v_nominal,
                                replay_cycles=integer(args.replay_cycles, "--replay-cycles", 0),
                                batch=integer(args.array_batch, "--array-batch", 1),
                                dvfs_switch_ns=number(args.dvfs_switch_ns, "--dvfs-switch-ns", minimum=0.0))


def _timing_spec(args, array):
    """The TimingSpec of the command line; its checks name the options."""
    from .timing import DEFAULT_MODEL, NAMED_MODELS, TimingSpec
    from .timing.spec import INJECTIONS
    name = args.timing_model or (DEFAULT_MODEL if getattr(args, "data", None) else "event-uniform")
    if name not in NAMED_MODELS:
        raise UserError(f"--timing-model {name!r} is not one of {', '.join(NAMED_MODELS)}")
    tech = {n: getattr(args, n) for n, _ in _TECH_OPTIONS if getattr(args, n) is not None}
    integer(args.calibration_images, "--calibration-images", 2)
    integer(args.pairs_per_layer, "--pairs-per-layer", 1)
    if args.injection not in INJECTIONS:
        raise UserError(f"--injection {args.injection!r} is not one of {', '.join(INJECTIONS)}")
    try:
        spec = TimingSpec.named(name, calibration_images=args.calibration_images,
                                pairs_per_layer=args.pairs_per_layer, corner=args.corner, adder=args.adder,
                                injection=args.injection, **tech)
    except ValueError as e:  # a combination of options the spec refuses (e.g. --injection with a uniform model)
        raise UserError(str(e)) from None
    spec.check_voltages([array.v_nominal], array)
    if spec.needs_operands and not getattr(args, "data", None):
        raise UserError(f"--timing-model {name} captures operands from a model: give --data (and --weights), "
                        "or use --timing-model event-uniform or static-uniform")
    return spec


def _protect_mask(args) -> int:
    """The protect mask of --protect / --protect-msbs (and --on-error, checked)."""
    from .accumulator import check_mask, msb_mask
    if args.on_error not in ON_ERRORS:
        raise UserError(f"--on-error {args.on_error!r} is not one of {', '.join(ON_ERRORS)}")
    if args.protect is not None:
        try:
            mask = int(args.protect, 0)
        except ValueError:
            raise UserError(f"--protect {args.protect!r} is not an integer mask (e.g. 0xff000000)") from None
        return check_mask(mask, args.acc_bits, "--protect")
    try:
        return msb_mask(args.protect_msbs, args.acc_bits)
    except (TypeError, ValueError):
        raise UserError(f"--protect-msbs must be between 0 and --acc-bits ({args.acc_bits}), "
                        f"got {args.protect_msbs}") from None


def _budget(args):
    from .strategies import Budget
    if not number(args.budget, "--budget (points of top-1)") >= 0:
        raise UserError(f"--budget must be >= 0 points of top-1, got {args.budget:g}")
    number(args.latency_budget, "--latency-budget (%)", minimum=0.0)
    return Budget.from_points(args.budget, args.latency_budget)


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


def _check_data(args) -> None:
    if not os.path.isdir(args.data):
        raise UserError(f"--data {args.data!r} does not exist or is not a folder")
    if args.model != PAPER_MODEL:
        import torchvision
        known = torchvision.models.list_models(module=torchvision.models)
        if args.model not in known:
            raise UserError(f"--model {args.model!r} is neither {PAPER_MODEL} nor a torchvision classifier "
                            f"({', '.join(k for k in known if k.startswith(('mobilenet', 'resnet')))}, ...)")
        integer(args.ptq_images, "--ptq-images", 1)
    if args.weights is not None and not os.path.isfile(args.weights):
        raise UserError(f"--weights {args.weights!r} does not exist")
    integer(args.batch_size, "--batch-size", 1)
    if args.limit is not None:
        integer(args.limit, "--limit", 1)
    if args.threads:
        integer(args.threads, "--threads", 1)
    _device(args.device)


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


def _voltage_grid(args) -> list:
    vmin, vmax = number(args.vmin, "--vmin (V)"), number(args.vmax, "--vmax (V)")
    step = number(args.step, "--step (V)", positive=True)
    if vmax < vmin:
        raise UserError(f"--vmax {vmax} is below --vmin {vmin}")
    n = int(round((vmax - vmin) / step))
    if n + 1 > MAX_GRID:
        raise UserError(f"--vmin {vmin} --vmax {vmax} --step {step} is a grid of {n + 1} voltages; "
                        f"at most {MAX_GRID}")
    return [round(vmin + i * step, 6) for i in range(n + 1)]


# ---- loading and the experiment -------------------------------------------------------

def _world(args):
    """This process's place under torchrun (one process without it); every
    rank must have been given the same arguments."""
    from .distributed import World
    world = World.from_env(args.device)
    args.device = world.device(args.device)
    world.check_same("arguments", {k: v for k, v in vars(args).items() if k not in ("func", "device")})
    return world


def _model_and_data(args, limit, world):
    """The converted int8 model on the device, and this rank's shard of the
    images decoded: (model, batches, global index of its first image). A
    float --model is converted by post-training int8 on the data set's first
    --ptq-images images (the same on every rank)."""
    from torch.utils.data import Subset

    from . import data, models
    from .dataflow import calibration_images
    from .nn import convert

    if args.threads:
        torch.set_num_threads(args.threads)
    ds = data.imagenet_dataset(args.data, limit)
    start, end = world.shard(len(ds))
    batches = data.decoded(Subset(ds, range(start, end)), args.batch_size, progress=world.is_main)
    if args.model == PAPER_MODEL:
        model = convert(models.mobilenet_v2_int8(args.weights), acc_bits=args.acc_bits)
    else:
        float_model = models.float_model(args.model, args.weights, pretrained=args.weights is None)
        calib = data.normalize(calibration_images(batches, args.ptq_images, world, start))
        model = convert(float_model, list(calib.split(16)), acc_bits=args.acc_bits)
    return model.to(args.device), batches, start


def _model_meta(args) -> dict:
    """What the results record about the model and the data."""
    meta = {"model": args.model, "data": os.path.abspath(args.data),
            "weights": os.path.abspath(args.weights) if args.weights else "torchvision"}
    if args.model != PAPER_MODEL:
        meta["ptq"] = {"images": args.ptq_images, "what": "post-training int8 (pyvs.nn.ptq) on the first images"}
    return meta


def _energy(args):
    from .energy import EnergyParams
    return EnergyParams(power_gating=number(getattr(args, "power_gating", 0.0), "--power-gating",
                                            minimum=0.0, maximum=1.0),
                        supply_decap_f=1e-9 * number(getattr(args, "supply_decap_nf", 80.0), "--supply-decap-nf",
                                                     minimum=0.0))


def _experiment(args, array, spec, world, limit=None):
    from .experiment import Experiment
    energy = _energy(args)
    model, batches, first = _model_and_data(args, limit if limit is not None else args.limit, world)
    return Experiment(model, batches, array=array, energy=energy, timing=spec, device=args.device,
                      progress=world.is_main, world=world, first_image=first)


def _fmt(value: float, lo: float, hi: float) -> str:
    return f"{100 * value:6.2f} % [{100 * lo:.2f}, {100 * hi:.2f}]"


def _print_layers(counts, most: int = 8) -> None:
    """The layers with the most errors per image (injected, corrected)."""
    names = sorted(set(counts.injected_per_layer) | set(counts.corrected_per_layer),
                   key=lambda n: -(counts.injected_per_layer.get(n, 0) + counts.corrected_per_layer.get(n, 0)))
    names = [n for n in names if counts.injected_per_layer.get(n, 0) + counts.corrected_per_layer.get(n, 0) > 0]
    if not names:
        return
    print(f"{'layer':<28} {'injected/img':>13} {'detected/img':>14}")
    for n in names[:most]:
        print(f"{n:<28} {counts.injected_per_layer.get(n, 0):>13.4g} {counts.corrected_per_layer.get(n, 0):>14.4g}")
    if len(names) > most:
        print(f"... and {len(names) - most} more layers with errors (all in --json)")


def _print_counts(injected: list, corrected: list) -> None:
    print(f"{'bit':>4} {'injected':>12} {'detected':>12}")
    for b, (i, c) in enumerate(zip(injected, corrected)):
        if i or c:
            print(f"{b:>4} {i:>12} {c:>12}")


# ---- commands ---------------------------------------------------------------------------

def _demo(args) -> int:
    """A small GEMM on the simulated array at one error rate: prints the
    injected and corrected counts per accumulator bit."""
    from .accumulator import check_width
    from .ops import seed64, systolic_matmul

    for name in ("m", "k", "n", "rows"):
        integer(getattr(args, name), f"--{name}", 1)
    W = args.acc_bits = check_width(args.acc_bits, "--acc-bits")
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
    out, stats = systolic_matmul(a, w, p, protect=protect, seed=args.seed, rows=args.rows,
                                 drop=args.on_error == "drop")
    dt = time.perf_counter() - t0
    macs = args.m * args.k * args.n
    print(f"systolic matmul {args.m}x{args.k}x{args.n} (uint8 x int8), {W}-bit accumulator, "
          f"{args.rows}-row array, p = {args.p:g} per bit per MAC, "
          f"protected bits: {bin(protect)}, detected errors {_DETECTED[args.on_error]} ; {dt * 1e3:.1f} ms")
    _print_counts(stats[0].tolist(), stats[1].tolist())
    print(f"total: {int(stats[0].sum())} injected, {int(stats[1].sum())} detected over {macs} MACs x {W} "
          f"bits (expected {macs * W * args.p:.1f} events)")
    wrong = int((out.long() != a.long() @ w.long()).sum())
    print(f"outputs that differ from the exact product: {wrong} of {out.numel()}")
    return 0


def _timing(args) -> int:
    """Per-bit error-probability table on a voltage grid: printed, saved as
    JSON, and drawn as a heatmap; with --data, the event model on the
    operands of MobileNetV2's layers."""
    from .plots import error_heatmap
    from .timing import save_table

    array = _array(args)
    spec = _timing_spec(args, array)
    voltages = spec.check_voltages(_voltage_grid(args), array)
    if args.out:
        _writable_file(args.out, "--out")
    if args.plot:
        _writable_file(args.plot, "--plot", _PLOT_FORMATS)
    if args.data:
        _check_data(args)
        world = _world(args)
        table = _experiment(args, array, spec, world).error_table(voltages)
    else:
        table = spec.table(voltages, array, args.acc_bits)
    _print_table(table, spec)
    if args.out:
        save_table(table, args.out)
        print(f"table: {args.out}")
    if args.plot:
        error_heatmap(table, args.plot)
        print(f"heatmap: {args.plot}")
    return 0


def _print_table(table, spec) -> None:
    tech = spec.tech
    W = table.acc_bits
    print(f"P(bit b of one MAC's {W}-bit accumulator {spec.what_errs}) per MAC, {table.freq_ghz} GHz, {spec.model} "
          f"model; Vth={tech.vth} V, alpha={tech.alpha}, guard-band={tech.guard_band}, "
          f"sigma_gate={tech.sigma_gate}, {tech.corner} corner, {spec.options.adder} adder" + ("; MAC-weighted mean of the layers" if table.layers else ""))
    top = list(range(W - 1, max(W - 5, -1), -1))
    print(f"{'V':>6} {'bits >= 1e-12':>14} " + " ".join(f"{'bit ' + str(b):>9}" for b in top))
    for v, row in zip(table.voltages, table.p):
        print(f"{v:>6.3f} {sum(x >= 1e-12 for x in row):>14} " + " ".join(f"{row[b]:>9.2e}" for b in top))
    c = table.params.get("convergence")
    if c:
        print(convergence_line(c))


def convergence_line(c: dict) -> str:
    """One line on how far the onset rests on the captured pairs
    (LayerTiming.onsets)."""
    v = lambda x: "none" if x is None else f"{x:.3f} V"  # noqa: E731
    head = (f"onset (highest V where a bit's MAC-weighted P(wrong) >= {c['threshold']:g}, "
            f"{1e3 * c['step_v']:g} mV grid): {v(c['onset'])} from {c['pairs']:,} captured pairs")
    if c.get("converged") is None:
        return head
    moved = max(abs(h - c["onset"]) for h in c["halves"] if h is not None) if None not in c["halves"] else None
    how = "from no error" if moved is None else f"up to {1e3 * moved:.0f} mV"
    advice = "" if c["converged"] else ": rarer pairs set it, more would move it less (--pairs-per-layer)"
    return head + (f"; {v(c['halves'][0])} and {v(c['halves'][1])} from each half: doubling the pairs "
                   f"moved it {how}{advice}")


def _schedule_spec(text: str) -> dict:
    """--schedule, parsed and checked as far as it can be without the model."""
    from .nn.layers import LAYER_KINDS
    from .schedule import parse
    plan = parse(text)
    for key, v in plan.items():
        number(v, f"--schedule: the supply of {key!r} (V)", positive=True)
    looks_like_kind = [k for k in plan if "." not in k and k != "default" and k not in LAYER_KINDS]
    if looks_like_kind:
        raise UserError(f"--schedule: {looks_like_kind} are not layer kinds ({', '.join(LAYER_KINDS)}) "
                        "nor qualified layer names")
    return plan


def _run_schedule(args, exp, plan: dict, protect: int, world) -> int:
    """`pyvs run --schedule`: every layer at its own supply."""
    from .accumulator import describe_mask
    from .results import write_run
    from .schedule import describe, resolve
    schedule = resolve(plan, exp.kinds)
    r = exp.schedule_point(schedule, protect, args.seed, "run", args.on_error)
    if not world.is_main:
        return 0
    print(f"{exp.timing.model} timing model, each layer at its own supply ({describe(schedule, exp.kinds)}; "
          f"MAC-weighted mean {r.voltage:.4f} V), {exp.array.freq_ghz} GHz; {r.costs.switches:g} changes of "
          f"supply per image, {100 * r.costs.switch_overhead:.3g} % latency waiting for them; max P = "
          f"{r.max_p:.2e} per MAC; protected bits: {describe_mask(protect)}, detected errors "
          f"{_DETECTED[args.on_error]}")
    _print_point(exp.golden, r, exp, exp.array)
    if args.json:
        write_run(args.json, exp.golden, r)
        print(f"results: {args.json}")
    return 0


def _run(args) -> int:
    """An int8 network on the simulated array: clean, then with timing errors
    at one voltage; prints accuracies, golden agreement, error counts and costs."""
    from .accumulator import describe_mask
    from .experiment import per_bit_max
    from .ops import seed64
    from .results import write_run

    _check_data(args)
    array = _array(args)
    spec = _timing_spec(args, array)
    plan = _schedule_spec(args.schedule) if args.schedule is not None else None
    spec.check_voltages(sorted(set(plan.values())) if plan else [args.voltage], array)
    protect = _protect_mask(args)
    seed64(args.seed)
    if args.json:
        _writable_file(args.json, "--json")
    world = _world(args)
    exp = _experiment(args, array, spec, world)
    if plan:
        return _run_schedule(args, exp, plan, protect, world)
    if world.is_main:
        what = ("torchvision's int8 MobileNetV2" if args.model == PAPER_MODEL else
                f"{args.model}, post-training int8 on the first {args.ptq_images} images")
        print(f"{what} on a {array.rows}-row systolic array, {args.acc_bits}-bit accumulators; "
              f"{exp.n_images} images from {args.data}; device {args.device}"
              + (f" on each of {world.size} ranks" if world.size > 1 else ""))
    table = exp.error_table([args.voltage])
    p = table.rates(args.voltage)
    r = exp.point(args.voltage, p, protect, args.seed, "run", args.on_error)
    if not world.is_main:
        return 0
    erring = [b for b in range(args.acc_bits) if per_bit_max(p)[b] > 0]
    print(f"{spec.model} timing model at {args.voltage} V, {array.freq_ghz} GHz: bits "
          f"{erring[0] if erring else '-'}..{erring[-1] if erring else '-'} err, max P = {r.max_p:.2e} per MAC; "
          f"protected bits: {describe_mask(protect)}, detected errors {_DETECTED[args.on_error]}"
          + ("; errors drawn by each MAC's operands (conditioned)" if spec.injection == "conditioned" else ""))
    if table.params.get("convergence"):
        print(convergence_line(table.params["convergence"]))
    _print_point(exp.golden, r, exp, array)
    if args.json:
        write_run(args.json, exp.golden, r)
        print(f"results: {args.json}")
    return 0


def _print_point(golden, r, exp, array) -> None:
    c, a, k = golden.accuracy, r.accuracy, r.costs
    print(f"clean   top-1 {_fmt(c.top1, c.top1_lo, c.top1_hi)}  top-5 {_fmt(c.top5, c.top5_lo, c.top5_hi)}  "
          f"({golden.seconds:.1f} s, {golden.images_per_s:.1f} img/s)")
    print(f"faulty  top-1 {_fmt(a.top1, a.top1_lo, a.top1_hi)}  top-5 {_fmt(a.top5, a.top5_lo, a.top5_hi)}  "
          f"({r.seconds:.1f} s, {a.n / r.seconds if r.seconds else float('inf'):.1f} img/s)")
    print(f"golden agreement (top-1) {_fmt(a.agree, a.agree_lo, a.agree_hi)}")
    print(f"errors: {r.counts.injected} injected, {r.counts.corrected} detected "
          f"({'Razor replays' if r.on_error == 'replay' else 'dropped MAC updates (TE-Drop)'})")
    _print_counts(r.counts.injected_per_bit, r.counts.corrected_per_bit)
    _print_layers(r.counts)
    print(f"latency overhead {100 * k.latency_overhead:.3g} % (one stall per error: "
          f"{100 * k.latency_overhead_bound:.3g} %), energy saving {100 * k.energy_saving:.1f} % "
          f"against {array.v_nominal} V ({array.batch} image(s) per weight load, {array.freq_ghz} GHz)")
    w = exp.workload
    print(f"energy per image {1e6 * k.energy_j:.4g} uJ: dynamic {1e6 * k.energy_dynamic_j:.4g}, leakage "
          f"{1e6 * k.energy_leakage_j:.4g}, data movement {1e6 * k.energy_movement_j:.4g}, Razor "
          f"{1e6 * k.energy_razor_j:.3g}, replays {1e6 * k.energy_replay_j:.3g} "
          f"(the {array.dataflow} array is {100 * w.utilization:.2g} % busy: {w.macs / 1e6:.0f} M MACs in "
          f"{w.cycles / 1e3:.0f} k cycles of {array.rows * array.cols} PEs)")


def _sweep_grid(args, array, spec):
    """The sweep's grid and the images to use, checked."""
    from .sweep import FULL_GRID, Grid
    if args.full:
        grid = FULL_GRID
    else:
        grid = Grid(_numbers(args.voltages, "--voltages"),
                    [s.strip() for s in args.strategies.split(",") if s.strip()], _numbers(args.seeds, "--seeds", int))
    return grid.check(spec, array, args.acc_bits)


def _sweep(args) -> int:
    """An int8 network across voltages and protection strategies; resumable."""
    from .results import load_results
    from .sweep import check_writable, sweep

    _check_data(args)
    array = _array(args)
    spec = _timing_spec(args, array)
    grid = _sweep_grid(args, array, spec)
    budget = _budget(args)
    world = _world(args)
    world.on_main(lambda: check_writable(args.out))
    exp = _experiment(args, array, spec, world)
    if world.is_main:
        _sweep_notes(args, grid, exp)
    try:
        rows = sweep(exp, grid, budget, args.out, _model_meta(args))
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
    convergence = exp.error_table(grid.voltages[:1]).params.get("convergence")
    if convergence:
        print(convergence_line(convergence))
    if not args.no_report:
        return _report_folder(args.out, budget)
    from .report import verdict_line
    print(verdict_line(rows, budget))
    return 0


def _sweep_notes(args, grid, exp) -> None:
    """What the sweep is about to do that a user should not learn from the bill."""
    from .results import load_results
    done = {r.key for r in load_results(args.out)[0]} if os.path.isdir(args.out) else set()
    todo = [pt for pt in grid.points if pt not in done]
    if done:
        print(f"{args.out} holds {len(done)} points; this grid adds {len(todo)} (meta.json records the union)")
    if args.full and not str(args.device).startswith("cuda"):
        evaluations = sum(2 if s == "auto" else 1 for _, s, _ in todo)
        print(f"--full on the CPU: {len(todo)} points, about {evaluations} evaluations of {exp.n_images} images "
              f"({evaluations * exp.n_images / 15 / 3600:.2g} hours at 15 images/s on 2 cores); "
              "--device cuda or --limit is the usual choice", file=sys.stderr)


def _schedule(args) -> int:
    """The joint search: per-layer voltages, protected bits and replay or
    TE-Drop, searched on the first images, reported on the rest."""
    from .ops import seed64
    from .report import schedule_report
    from .schedule_search import GROUPINGS, Search, SearchConfig, split_batches
    from .sweep import check_writable

    _check_data(args)
    array = _array(args)
    spec = _timing_spec(args, array)
    volts = spec.check_voltages(_numbers(args.voltages, "--voltages"), array)
    latencies = _numbers(args.latency_budgets, "--latency-budgets")
    if not latencies or any(not 0 <= x <= 100 for x in latencies):
        raise UserError(f"--latency-budgets must be per cents in [0, 100], got {args.latency_budgets}")
    if args.groups not in GROUPINGS:
        raise UserError(f"--groups {args.groups!r} is not one of {', '.join(GROUPINGS)}")
    budget = _budget(args)
    seed64(args.seed)
    config = SearchConfig(tuple(volts), tuple(x / 100 for x in latencies), budget.accuracy, args.groups, args.seed)
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("1", ""):
        raise UserError("the schedule search runs in one process; start it without torchrun")
    check_writable(args.out)
    exp = _experiment(args, array, spec, _world(args))
    n = exp.n_images
    k = n // 2 if args.search_images is None else integer(args.search_images, "--search-images", 1)
    if not 1 <= k < n:
        raise UserError(f"--search-images must leave images to report on: 1 <= N < {n}, got {k}")
    first, rest = split_batches(exp.batches, k)
    search_exp = exp.on_images(first, 0)
    print(f"joint search on images 0..{k - 1}, reported on images {k}..{n - 1}; grid {', '.join(map(str, volts))} V; "
          f"latency budgets {', '.join(f'{x:g} %' for x in latencies)}; groups: {args.groups}")
    try:
        Search(search_exp, search_exp.on_images(rest, k), config, args.out).run()
    except KeyboardInterrupt:
        if args.debug or os.environ.get("PYVS_DEBUG"):
            raise
        print(f"pyvs schedule: interrupted; every finished evaluation is saved in {args.out}; "
              "run the same command again to resume", file=sys.stderr)
        return 130
    paths = schedule_report(args.out)
    with open(paths[-1]) as f:
        print(f.read())
    print("wrote " + ", ".join(paths))
    return 0


def _slack(args) -> int:
    """Guard-band x voltage: latency overhead with every erring bit
    protected, the lowest voltage per guard-band within the budgets, and the
    guard-band the paper's 0.5 V / 0.001 % point implies."""
    from . import slack
    from .report import slack_report
    from .sweep import check_writable

    _check_data(args)
    array = _array(args)
    spec = _timing_spec(args, array)
    if not spec.needs_operands:
        raise UserError(f"the slack map simulates the event-driven model on captured operands, not "
                        f"{spec.model}: use --timing-model event")
    if args.guard_band is not None:
        raise UserError("the slack map runs every guard-band of --guard-bands; --guard-band has no meaning here")
    gbs = _numbers(args.guard_bands, "--guard-bands")
    if any(not g >= 0 for g in gbs):
        raise UserError(f"--guard-bands must be >= 0, got {args.guard_bands}")
    voltages = spec.check_voltages(_voltage_grid(args), array)
    budget = _budget(args)
    integer(args.evaluate_below, "--evaluate-below", 0)
    world = _world(args)
    world.on_main(lambda: check_writable(args.out))
    exp = _experiment(args, array, spec, world)
    result = slack.study(exp, gbs, voltages, budget, args.evaluate_below, args.out)
    if world.is_main:
        _print_slack(result, spec, args)
        print("wrote " + ", ".join(slack_report(result, args.out)))
    return 0


def _print_slack(result, spec, args) -> None:
    from .slack import PAPER_POINT
    m = result.map
    auto = (f"; 'auto': measured on {args.limit or 'all'} images within {args.budget:g} points of top-1"
            if result.evaluated is not None else "")
    print(f"lowest voltage with latency overhead <= {100 * result.settings['latency_budget']:g} %; 'all': every "
          f"erring bit protected (outputs = the fault-free run's, so any top-1 budget holds){auto}; "
          f"{result.settings['freq_ghz']} GHz, event model on {spec.calibration_images} calibration images")
    print(f"{'guard-band':>10} {'all':>6} {'overhead':>10} {'auto':>6}")
    for i, r in enumerate(result.summary):
        v = r["lowest_v_all_protected"]
        at = f"{100 * m.overhead[i, m.voltages.index(v)]:.3g} %" if v is not None else "-"
        auto_v = r.get("lowest_v_auto", "n/a") if result.evaluated is not None else "-"
        print(f"{r['guard_band']:>10.3g} {v if v is not None else '-':>6} {at:>10} {str(auto_v):>6}")
    g = result.implied_guard_band
    print(f"the paper's {PAPER_POINT[0]} V at {100 * PAPER_POINT[1]:g} % latency overhead implies a guard-band of "
          + (f"{g:.3f}" if g is not None else "more than 4") + f" (default {spec.tech.guard_band})")


def _report(args) -> int:
    """Plots and a Markdown table from a sweep's results folder."""
    return _report_folder(args.results, _budget(args))


def _report_folder(folder: str, budget) -> int:
    from .report import report
    paths = report(folder, budget)
    with open(paths[-1]) as f:
        print(f.read())
    print("wrote " + ", ".join(paths))
    return 0


# ---- the parser ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:  # long: one declaration per sub-command, read top to bottom
    from . import __version__
    from .sweep import Grid
    lines = __doc__.splitlines()
    parser = argparse.ArgumentParser(prog="pyvs", description=lines[0] + "\n" + lines[1])
    parser.add_argument("--version", action="version", version=f"pyvs {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)
    hw, timing, grid, budget, faults = (_hardware_options(), _timing_options(), _grid_options(),
                                        _budget_options(), _fault_options())
    energy = _energy_options()

    d = sub.add_parser("demo", parents=[hw, faults], help="one faulty GEMM; prints injected/corrected counts per bit")
    d.add_argument("--m", type=int, default=512, help="rows of a (default: 512)")
    d.add_argument("--k", type=int, default=1152, help="reduction length (default: 1152)")
    d.add_argument("--n", type=int, default=256, help="columns of w (default: 256)")
    d.add_argument("--p", type=float, default=1e-6,
                   help="error probability of every accumulator bit per MAC (default: 1e-6)")
    d.set_defaults(func=_demo)

    t = sub.add_parser("timing", parents=[hw, timing, grid, _data_options(required=False)],
                       help="per-bit timing-error probabilities versus supply voltage")
    t.add_argument("--out", default="error_table.json", metavar="JSON",
                   help="table file to write (default: error_table.json; '' to skip)")
    t.add_argument("--plot", default="error_table.png", metavar="PNG",
                   help="heatmap to write, .png/.pdf/.svg (default: error_table.png; '' to skip)")
    t.set_defaults(func=_timing)

    r = sub.add_parser("run", parents=[_data_options(required=True), hw, energy, timing, faults],
                       help="an int8 network (MobileNetV2 by default) with timing errors at one voltage")
    r.add_argument("--voltage", type=float, default=0.5, help="supply voltage, V (default: 0.5)")
    r.add_argument("--schedule", default=None, metavar="KIND=V,...",
                   help="each layer at its own supply instead of --voltage: 'KEY=V,...' with keys layer kinds "
                        "(stem, depthwise, expand, project, linear, ...), layer names or 'default', or a JSON "
                        "file {key: V}"),
    r.add_argument("--json", default=None, metavar="FILE",
                   help="also write the clean accuracies and the result row to this JSON file")
    r.set_defaults(func=_run)

    sw = sub.add_parser("sweep", parents=[_data_options(required=True), hw, energy, timing, budget],
                        help="accuracy, latency and energy across voltages and protection")
    sw.add_argument("--out", default="results", help="results folder; resumed if present (default: results)")
    default_grid = Grid()
    sw.add_argument("--voltages", default=",".join(f"{v:g}" for v in default_grid.voltages),
                    help="comma-separated volts (default: %(default)s)")
    sw.add_argument("--strategies", default=",".join(default_grid.strategies),
                    help="comma-separated: none, all, msbN, 0xMASK, auto, each but none optionally with -drop "
                         "(TE-Drop instead of replays, e.g. auto-drop) (default: %(default)s)")
    sw.add_argument("--seeds", default=",".join(map(str, default_grid.seeds)),
                    help="comma-separated integer seeds (default: %(default)s)")
    sw.add_argument("--full", action="store_true",
                    help="GPU-sized grid: 0.50-0.90 V step 0.01, 5 strategies, 3 seeds")
    sw.add_argument("--no-report", action="store_true", help="skip the plots and table")
    sw.set_defaults(func=_sweep)

    sl = sub.add_parser("slack", parents=[_data_options(required=True), hw, energy, timing, grid, budget],
                        help="guard-band x voltage: where errors begin and what they cost")
    sl.add_argument("--out", default="slack", help="output folder (default: slack)")
    sl.add_argument("--guard-bands", default="0,0.05,0.1,0.2,0.3,0.5,0.75,1,1.5",
                    help="comma-separated timing margins at the nominal supply, fractions of the worst path "
                         "(default: 0,0.05,0.1,0.2,0.3,0.5,0.75,1,1.5)")
    sl.add_argument("--evaluate-below", type=int, default=0, metavar="N",
                    help="also measure 'auto' at N grid voltages under each guard-band's frontier "
                         "(one resumable sweep per guard-band in OUT/gbG; default: 0)")
    sl.set_defaults(func=_slack)

    sc = sub.add_parser("schedule", parents=[_data_options(required=True), hw, energy, timing, budget],
                        help="the joint search: per-layer voltages, protected bits and replay or TE-Drop "
                             "within budgets, searched on part of the images and reported on the rest")
    sc.add_argument("--out", default="schedule", help="output folder; resumed if present (default: schedule)")
    sc.add_argument("--voltages", default="0.53,0.525,0.52,0.515,0.51,0.505,0.5",
                    help="the grid every layer's supply is chosen from, V (default: %(default)s)")
    sc.add_argument("--latency-budgets", default="0.001,1",
                    help="comma-separated latency budgets, %% (default: %(default)s: the paper's and 1 %%)")
    sc.add_argument("--groups", default="kind", metavar="{kind,layer}",
                    help="what shares a supply: layers of a kind, or each layer alone (default: kind)")
    sc.add_argument("--search-images", type=int, default=None, metavar="N",
                    help="search on the first N images, report on the rest (default: half)")
    sc.add_argument("--seed", type=int, default=0, help="random seed of the timing errors (default: 0)")
    sc.set_defaults(func=_schedule)

    rp = sub.add_parser("report", parents=[budget], help="plots and a Markdown table from a sweep's results folder")
    rp.add_argument("results", help="results folder of pyvs sweep")
    rp.set_defaults(func=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or bool(os.environ.get("PYVS_DEBUG"))
    # Under torchrun every rank runs this; its messages name the rank.
    size = os.environ.get("WORLD_SIZE", "1").strip()
    who = f"pyvs {args.command}" + (f" [rank {os.environ.get('RANK', '?')}/{size}]" if size not in ("1", "") else "")
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
