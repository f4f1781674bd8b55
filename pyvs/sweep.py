"""The paper's experiment: accuracy, latency and energy across supply
voltages and protection strategies, resumable.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
    (this module drives the whole chain for a grid of points)

For each point (voltage, strategy, seed): the timing model's per-bit
probabilities at that voltage, the protect mask of the strategy (searched for
'auto', see :mod:`pyvs.strategies`), and one experiment point
(:class:`pyvs.experiment.Experiment`: a faulty evaluation against the golden
run, with latency and energy). Rows are written as each point finishes
(:mod:`pyvs.results`, atomically), so a run killed at any moment leaves
complete files, and a new run with the same out_dir skips the points already
there.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from . import timing
from .checks import integer, number
from .costs import Workload
from .distributed import SHARD_RULE, World
from .energy import EnergyParams
from .experiment import Experiment, Golden, Rates, per_bit_max
from .nn.layers import model_width, systolic_layers
from .latency import ArrayConfig
from .results import PointResult, load_golden, load_results, save_golden, write_meta, write_results
from .strategies import auto_select, parse_strategy

_PAUSE = float(os.environ.get("PYVS_SWEEP_PAUSE", "0") or 0)

# `pyvs sweep --full`: a GPU-sized grid on every image.
FULL_GRID = {"voltages": [round(0.50 + 0.01 * i, 3) for i in range(41)],
             "strategies": ["none", "msb4", "msb8", "all", "auto"], "seeds": [0, 1, 2]}

# meta.json entries that must match for a folder to be resumed.
_SAME_SWEEP = ("n_images", "freq_ghz", "acc_bits", "budget", "array", "energy", "timing_options",
               "timing_model", "calibration", "model", "data_sha256", "model_sha256")


def fingerprint_batches(batches, world: World = World()) -> str:
    """SHA-256 over every image's and label's own hash, in global order,
    whatever the batching and the world size: a folder is never resumed on
    other data, even of the same size."""
    local = [f"{hashlib.sha256(xi.contiguous().numpy().tobytes()).hexdigest()}:{int(yi)}"
             for x, y in batches for xi, yi in zip(x.detach().cpu(), y.detach().cpu())]
    every = [d for part in world.gather(local) for d in part]
    return hashlib.sha256("\n".join(every).encode()).hexdigest()


def fingerprint_model(model: torch.nn.Module) -> str:
    """SHA-256 of a model's state (weights, scales, biases) and its systolic
    layers' settings."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for name, layer in systolic_layers(model):
        h.update(f"{name}: {layer.extra_repr()}".encode())
    return h.hexdigest()


def check_grid(voltages: Sequence[float], strategies: Sequence[str], budget: float, acc_bits: int,
               tech: timing.TechParams) -> List[float]:
    """Validates the sweep's grid; returns the voltages as floats."""
    v = timing.check_voltages(voltages, tech)
    if len(set(v)) != len(v):
        raise ValueError(f"the voltage grid has repeated voltages: {v}")
    if not strategies:
        raise ValueError("no protection strategy given")
    for s in strategies:
        parse_strategy(s, acc_bits)
    try:
        number(budget, "budget", minimum=0.0)
    except (TypeError, ValueError):
        raise ValueError(f"the accuracy-loss budget must be >= 0, got {budget}") from None
    return v


def check_writable(out_dir: str) -> None:
    """Creates the results folder, or a ValueError saying why it cannot."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot write to the output folder {out_dir!r}: {e.strerror or e}") from None


def _check_same_sweep(out_dir: str, old: dict, new: dict) -> None:
    if old and not all(k in old for k in _SAME_SWEEP if k in new):
        raise ValueError(f"{out_dir!r} holds results whose provenance is not recorded (made by an "
                         "older pyvs, or not a sweep folder); use a new output folder")
    for key in _SAME_SWEEP:
        if old and key in new and old.get(key) != new.get(key):
            what = {"data_sha256": "data", "model_sha256": "model (weights or layer settings)"}.get(key, key)
            raise ValueError(f"{out_dir!r} holds a sweep with other {what} ({str(old.get(key))[:64]}); "
                             "use a new output folder")


def _golden(out_dir: str, meta: dict) -> Optional[Golden]:
    """The golden run cached in the folder (resuming must not change it)."""
    g = load_golden(out_dir)
    if g is None:
        return None
    shapes = g.get("shapes") or {n: tuple(s) for n, s in meta.get("layers", {}).items()}
    return Golden(g["pred"], g["clean"], shapes)


def _rates(exp: Experiment, out_dir: str, volts: List[float], freq_ghz: float, timing_model: str,
           timing_options: dict, calibration: dict, probabilities) -> Dict[float, Rates]:
    """What the op takes at each voltage (per-bit probabilities, float64
    [W], or one such row per layer): the timing model's (its table saved in
    the folder, by rank 0) or those of ``probabilities``."""
    if probabilities is not None:
        pt = probabilities(volts)
        return {v: pt[i].to(torch.float64) for i, v in enumerate(volts)}
    table = exp.error_table(volts, freq_ghz, timing_model, timing_options, **calibration)
    exp.world.on_main(lambda: timing.save_table(table, os.path.join(out_dir, "error_table.json")))
    return {v: table.rates(v) for v in volts}


def _auto_point(exp: Experiment, v: float, p: torch.Tensor, seed: int, budget: float,
                search: List[PointResult]) -> PointResult:
    """The 'auto' point: the cheapest mask that meets the budget; every
    evaluation of the search is appended to ``search``."""
    def trial(mask):
        search.append(exp.point(v, p, mask, seed, "auto-search"))
        return search[-1]
    mask, tried = auto_select(trial, exp.expected_events(p), exp.golden.clean["top1"], budget)
    if not tried:
        return exp.point(v, p, mask, seed, "auto")
    chosen = next(r for m, r in reversed(tried) if m == mask)
    return dataclasses.replace(chosen, strategy="auto", evaluations=len(tried),
                               seconds=sum(r.seconds for _, r in tried))


def sweep(model: torch.nn.Module, batches, out_dir: str, voltages: Sequence[float],
          strategies: Sequence[str] = ("none", "all", "auto"), seeds: Sequence[int] = (0,),
          freq_ghz: float = 0.7, acc_bits: int = 32, budget: float = 0.003,
          array: Optional[ArrayConfig] = None, energy: EnergyParams = EnergyParams(),
          timing_options: Optional[dict] = None, timing_model: str = timing.DEFAULT_MODEL,
          calibration_images: int = 32, pairs_per_layer: int = 4096,
          device: str = "cpu", progress: bool = True,
          meta: Optional[dict] = None,
          probabilities: Optional[Callable[[List[float]], torch.Tensor]] = None,
          world: World = World(), first_image: int = 0) -> List[PointResult]:
    """Runs (or resumes) a sweep; returns all its rows.

    Args:
        model: a converted model (systolic layers), eval mode.
        batches: list of (images [B, 3, H, W], uint8 or float, int64 labels [B]), in order.
        out_dir: results folder (created; resumed if it holds this sweep).
        voltages: volts; strategies: see :mod:`pyvs.strategies`; seeds: ints.
        freq_ghz: GHz; acc_bits: bits; budget: accuracy-loss budget of 'auto'
            (fraction: 0.003 = 0.3 points).
        array, energy: latency and energy model parameters.
        timing_options: technology overrides and seed of the timing model
            (see :class:`pyvs.timing.TimingOptions`).
        timing_model: a name of :data:`pyvs.timing.NAMED_MODELS`; 'event'
            (the default) captures operand pairs per layer from the model on
            the first ``calibration_images`` images, ``pairs_per_layer`` each.
        meta: extra entries for meta.json (e.g. the model and data it ran on).
        probabilities: replaces the timing model (voltages -> float64 [V, W]),
            for studies with hand-made error rates.
        world, first_image: under torchrun, ``batches`` are this rank's shard,
            starting at global image ``first_image`` (:mod:`pyvs.distributed`);
            rank 0 reads and writes the folder, every rank gets the rows.
    """
    timing_options = dict(timing_options or {})
    array = array or ArrayConfig(freq_ghz=freq_ghz)
    tech = timing.TimingOptions.from_kwargs(timing.named_model(timing_model, timing_options)).tech
    calibration = {"calibration_images": integer(calibration_images, "calibration images", 1),
                   "pairs_per_layer": integer(pairs_per_layer, "pairs per layer", 1)}
    volts = check_grid(voltages, strategies, budget, acc_bits, tech)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seed given")
    if model_width(model) != acc_bits:
        raise ValueError(f"the model's layers have a {model_width(model)}-bit accumulator, the sweep {acc_bits}")
    world.on_main(lambda: check_writable(out_dir))
    config = {"voltages": volts, "strategies": list(strategies), "seeds": seeds, "freq_ghz": freq_ghz,
              "acc_bits": acc_bits, "budget": budget, "n_images": sum(world.gather(sum(len(y) for _, y in batches))),
              "data_sha256": fingerprint_batches(batches, world), "model_sha256": fingerprint_model(model),
              "array": vars(array).copy(), "energy": vars(energy).copy(), "timing_options": timing_options,
              "timing_model": "custom probabilities" if probabilities else timing_model,
              "calibration": calibration if timing_model == "event" and not probabilities else {},
              **(meta or {})}
    world.check_same("sweep settings or model", config)
    rows, search, old_meta, golden = world.on_main(lambda: _open_folder(out_dir, config))
    exp = Experiment(model, batches, array=array, energy=energy, device=device, progress=progress,
                     golden=golden, world=world, first_image=first_image)
    p_of = _rates(exp, out_dir, volts, freq_ghz, timing_model, timing_options, calibration, probabilities)
    world.on_main(lambda: (save_golden(out_dir, dataclasses.asdict(exp.golden)), write_meta(
        out_dir, dict(config, world={"size": world.size, "shards": SHARD_RULE},
                      **_workload_meta(exp.golden, exp.workload)))))
    return _run_points(exp, out_dir, rows, search, volts, strategies, seeds, p_of, budget, progress)


def _open_folder(out_dir: str, config: dict):
    """(rows, search steps, meta, cached golden run) of the folder, after
    checking that it holds this sweep; its files are rewritten, which
    regenerates a damaged or stale copy."""
    rows, search, old_meta = load_results(out_dir)
    _check_same_sweep(out_dir, old_meta, config)
    write_results(out_dir, rows, search)
    return rows, search, old_meta, _golden(out_dir, old_meta)


def _workload_meta(golden: Golden, w: Workload) -> dict:
    return {"clean": golden.clean, "macs_per_image": w.macs, "base_cycles_per_image": w.cycles,
            "baseline_energy_j": w.baseline_j, "layers": {n: list(s) for n, s in w.shapes.items()}}


def _evaluations_ahead(exp: Experiment, pending, p_of) -> int:
    """About how many evaluations the pending points take: none where no bit
    errs or the same effective mask was evaluated already, one per fixed
    strategy, log2(#erring bits) + 2 for 'auto' (its binary search)."""
    total, keys = 0, set()
    for v, strategy, seed in pending:
        mask = parse_strategy(strategy, exp.acc_bits)
        erring = int((per_bit_max(p_of[v]) > 0).sum())
        if not erring:
            continue
        if mask is None:
            total += math.ceil(math.log2(erring + 1)) + 1
        elif exp.key(v, p_of[v], mask, seed) not in keys | exp.evaluated_keys():
            keys.add(exp.key(v, p_of[v], mask, seed))
            total += 1
    return total


def _run_points(exp: Experiment, out_dir: str, rows: List[PointResult], search: List[PointResult],
                volts, strategies, seeds, p_of, budget, progress) -> List[PointResult]:
    """Every point of the grid not yet in ``rows``, written as it finishes.
    Progress counts evaluated images, so its ETA holds for error-free points
    (no evaluation) and automatic searches (several) alike."""
    done = {r.key for r in rows}
    # Search steps of an 'auto' point that a killed run left unfinished are redone.
    search[:] = [r for r in search if (r.voltage, "auto", r.seed) in done]
    pending = [(v, s, sd) for v in volts for s in strategies for sd in seeds if (v, s, sd) not in done]
    n, world = exp.n_images, exp.world
    with tqdm(total=n * _evaluations_ahead(exp, pending, p_of), desc=f"sweep ({len(pending)} points)",
              unit="img", disable=not (progress and world.is_main)) as bar:
        for i, (v, strategy, seed) in enumerate(pending):
            mask = parse_strategy(strategy, exp.acc_bits)
            before = exp.evaluations
            rows.append(_auto_point(exp, v, p_of[v], seed, budget, search) if mask is None
                        else exp.point(v, p_of[v], mask, seed, strategy))
            world.on_main(lambda: write_results(out_dir, rows, search))
            bar.update(n * (exp.evaluations - before))
            bar.total = bar.n + n * _evaluations_ahead(exp, pending[i + 1:], p_of)
            bar.refresh()
            if _PAUSE:  # testing aid: time for a test to kill the run between points
                time.sleep(_PAUSE)
    return rows


def rescore(out_dir: str, array: ArrayConfig, energy: EnergyParams = EnergyParams()) -> List[PointResult]:
    """The rows of a finished sweep with latency and energy recomputed for
    another array or energy model, from the measured replays per image per
    layer and the layers' GEMM shapes (accuracy is unchanged: the events do
    not depend on these models). Nothing is written."""
    rows, _, meta = load_results(out_dir)
    if not rows or "layers" not in meta:
        raise ValueError(f"{out_dir!r} holds no finished sweep")
    work = Workload({n: tuple(s) for n, s in meta["layers"].items()}, array, energy)
    return [dataclasses.replace(r, **dataclasses.asdict(
                work.costs(r.voltage, r.protected_bits, r.corrected_per_layer))) for r in rows]
