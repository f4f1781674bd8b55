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
from typing import List, Optional, Sequence

import torch
from tqdm import tqdm

from . import timing
from .checks import integer
from .costs import Workload
from .distributed import SHARD_RULE, World
from .energy import EnergyParams
from .experiment import Experiment, per_bit_max
from .hardware import ArrayConfig
from .nn.layers import systolic_layers
from .results import (PointResult, clean_record, load_golden, load_results, save_golden, write_meta,
                      write_results)
from .strategies import SEARCH, Budget, auto_select, on_error, parse_strategy

_PAUSE = float(os.environ.get("PYVS_SWEEP_PAUSE", "0") or 0)

# meta.json entries that must match for a folder to be resumed.
_SAME_SWEEP = ("n_images", "acc_bits", "budget", "array", "energy", "timing", "model", "data_sha256",
               "model_sha256")


@dataclasses.dataclass(frozen=True)
class Grid:
    """The points of a sweep: supply voltages (V), protection strategies
    (:mod:`pyvs.strategies`) and seeds; every combination is one point."""

    voltages: Sequence[float] = (0.9, 0.6, 0.53, 0.52, 0.51)
    strategies: Sequence[str] = ("none", "all", "auto")
    seeds: Sequence[int] = (0,)

    def check(self, timing: "timing.TimingSpec", array: ArrayConfig, acc_bits: int) -> "Grid":
        """The grid with its voltages as floats and seeds as ints, checked:
        voltages in the timing model's range and distinct, known strategies,
        at least one seed."""
        v = timing.check_voltages(list(self.voltages), array)
        if len(set(v)) != len(v):
            raise ValueError(f"the voltage grid has repeated voltages: {v}")
        if not self.strategies:
            raise ValueError("no protection strategy given")
        for st in self.strategies:
            parse_strategy(st, acc_bits)
        if not self.seeds:
            raise ValueError("no seed given")
        return Grid(v, [str(st) for st in self.strategies], [integer(sd, "seed") for sd in self.seeds])

    @property
    def points(self) -> list:
        return [(v, st, sd) for v in self.voltages for st in self.strategies for sd in self.seeds]


# `pyvs sweep --full`: a GPU-sized grid (615 points) on every image.
FULL_GRID = Grid([round(0.50 + 0.01 * i, 3) for i in range(41)], ["none", "msb4", "msb8", "all", "auto"],
                 [0, 1, 2])


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


# Fields of meta's records added after folders were made (nested as in
# meta), and the value that reproduces such a folder (None: any value does:
# they only price what those folders cannot hold, such as changes of supply
# between layers, or they matter only away from the recorded default, as the
# die-to-die sigma away from the typical corner). Candidates per image were
# 256 before they grew with the pairs asked for: a folder that asked for more
# than 256 per image holds fewer pairs than asked, and is not resumed.
_ADDED = {"array": {"dataflow": "ws", "dvfs_switch_ns": None}, "energy": {"supply_decap_f": None},
          "timing": {"tech": {"corner": "typical", "sigma_vth_die": None},
                     "calibration": {"candidates_per_image": 256}, "injection": "independent"}}


def _as_recorded(added: dict, old, new):
    """``new`` without the fields that ``old`` predates and that do not change its results."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out = {}
    for k, v in new.items():
        if isinstance(added.get(k), dict):
            out[k] = _as_recorded(added[k], old.get(k), v)
        elif not (k in added and k not in old and (added[k] is None or v == added[k])):
            out[k] = v
    return out


def as_recorded(old: dict, new: dict) -> dict:
    """The provenance ``new`` as a folder whose provenance is ``old`` would
    have recorded it: without the fields added since that do not change its
    results (:data:`_ADDED`)."""
    return _as_recorded(_ADDED, old, new)


def _check_same_sweep(out_dir: str, old: dict, new: dict) -> None:
    if old and not all(k in old for k in _SAME_SWEEP if k in new):
        raise ValueError(f"{out_dir!r} holds results whose provenance is not recorded (made by an "
                         "older pyvs, or not a sweep folder); use a new output folder")
    for key in _SAME_SWEEP:
        if old and key in new and old.get(key) != _as_recorded(_ADDED.get(key, {}), old.get(key), new.get(key)):
            what = {"data_sha256": "data", "model_sha256": "model (weights or layer settings)"}.get(key, key)
            raise ValueError(f"{out_dir!r} holds a sweep with other {what} ({str(old.get(key))[:64]}); "
                             "use a new output folder")


def _auto_point(exp: Experiment, v: float, p, seed: int, budget: Budget,
                search: List[PointResult], strategy: str = "auto") -> PointResult:
    """The 'auto' (or 'auto-drop') point: the cheapest mask that meets the
    accuracy budget; every evaluation of the search is appended to
    ``search``, as strategy + '-search'."""
    handling = on_error(strategy)

    def trial(mask):
        search.append(exp.point(v, p, mask, seed, strategy + SEARCH, handling))
        return search[-1]
    mask, tried = auto_select(trial, exp.expected_events(p), budget.accuracy)
    if not tried:
        return exp.point(v, p, mask, seed, strategy, handling)
    chosen = next(r for m, r in reversed(tried) if m == mask)
    return dataclasses.replace(chosen, strategy=strategy, evaluations=len(tried),
                               seconds=sum(r.seconds for _, r in tried))


def sweep(experiment: Experiment, grid: Grid = Grid(), budget: Budget = Budget(), out_dir: str = "results",
          meta: Optional[dict] = None) -> List[PointResult]:
    """Runs (or resumes) a sweep of ``experiment`` over ``grid`` into
    ``out_dir`` (created; resumed if it holds this sweep; meta.json records
    the union of the grids run into it); returns all its rows, those of
    earlier runs first.

    budget: the accuracy budget of 'auto' and the latency limit of the
    report (fractions). meta: extra entries for meta.json (e.g. the model
    and data it ran on). Under torchrun (``experiment.world``), rank 0 reads
    and writes the folder and every rank gets the rows.
    """
    exp, world = experiment, experiment.world
    if not isinstance(grid, Grid) or not isinstance(budget, Budget):
        raise TypeError("sweep(experiment, grid: Grid, budget: Budget, out_dir)")
    grid = grid.check(exp.timing, exp.array, exp.acc_bits)
    world.on_main(lambda: check_writable(out_dir))
    config = {"acc_bits": exp.acc_bits, "budget": budget.as_dict(), "n_images": exp.n_images,
              "data_sha256": fingerprint_batches(exp.batches, world), "model_sha256": fingerprint_model(exp.model),
              "array": exp.array.as_dict(), "energy": dataclasses.asdict(exp.energy),
              "timing": exp.timing.describe(), **(meta or {})}
    world.check_same("sweep settings or model", dict(config, grid=dataclasses.asdict(grid)))
    rows, search, old_meta, golden = world.on_main(lambda: _open_folder(out_dir, config))
    if golden is not None and exp._golden is None:
        exp._golden = golden  # resuming must not change the golden run
    exp.golden  # every rank runs it here (its evaluation gathers across ranks), not inside on_main
    table = exp.error_table(grid.voltages)
    world.on_main(lambda: timing.save_table(_merged_table(out_dir, table), os.path.join(out_dir, "error_table.json")))
    p_of = {v: table.rates(v) for v in grid.voltages}
    world.on_main(lambda: (save_golden(out_dir, exp.golden), write_meta(
        out_dir, dict(config, **_union(old_meta, grid), world={"size": world.size, "shards": SHARD_RULE},
                      **_workload_meta(exp)))))
    return _run_points(exp, out_dir, rows, search, grid, p_of, budget)


def _union(old_meta: dict, grid: Grid) -> dict:
    """The grid of every run into the folder: voltages, strategies and seeds seen."""
    merge = lambda key, new: sorted(set(old_meta.get(key, [])) | set(new), key=lambda x: (str(type(x)), x))  # noqa: E731
    return {"voltages": merge("voltages", grid.voltages), "strategies": merge("strategies", grid.strategies),
            "seeds": merge("seeds", grid.seeds)}


def _merged_table(out_dir: str, table):
    """The folder's error table with this run's voltages added (an earlier
    run's rows for other voltages are kept)."""
    path = os.path.join(out_dir, "error_table.json")
    if not os.path.exists(path):
        return table
    try:
        old = timing.load_table(path)
    except ValueError:
        return table
    if old.layers.keys() != table.layers.keys() or old.acc_bits != table.acc_bits or old.freq_ghz != table.freq_ghz:
        return table
    rows = {v: (p, {n: r[i] for n, r in old.layers.items()}) for i, (v, p) in enumerate(zip(old.voltages, old.p))}
    rows.update({v: (p, {n: r[i] for n, r in table.layers.items()}) for i, (v, p) in enumerate(zip(table.voltages, table.p))})
    volts = sorted(rows)
    return timing.ErrorTable(volts, [rows[v][0] for v in volts], table.freq_ghz, table.acc_bits, table.params,
                             {n: [rows[v][1][n] for v in volts] for n in table.layers})


def _open_folder(out_dir: str, config: dict):
    """(rows, search steps, meta, cached golden run) of the folder, after
    checking that it holds this sweep; its files are rewritten, which
    regenerates a damaged or stale copy."""
    rows, search, old_meta = load_results(out_dir)
    _check_same_sweep(out_dir, old_meta, config)
    write_results(out_dir, rows, search)
    shapes = {n: tuple(s) for n, s in old_meta.get("layers", {}).items()}
    return rows, search, old_meta, load_golden(out_dir, shapes)


def _workload_meta(exp: Experiment) -> dict:
    w = exp.workload
    return {"clean": clean_record(exp.golden), "macs_per_image": w.macs, "base_cycles_per_image": w.cycles,
            "utilization": w.utilization, "baseline_energy_j": w.baseline_j, "baseline_energy": w.baseline,
            "layers": {n: list(s) for n, s in w.shapes.items()}}


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
        key = None if mask is None else exp.key(v, p_of[v], mask, seed, on_error(strategy))
        if mask is None:
            total += math.ceil(math.log2(erring + 1)) + 1
        elif key not in keys | exp.evaluated_keys():
            keys.add(key)
            total += 1
    return total


def _run_points(exp: Experiment, out_dir: str, rows: List[PointResult], search: List[PointResult],
                grid: Grid, p_of, budget: Budget) -> List[PointResult]:
    """Every point of the grid not yet in ``rows``, written as it finishes.
    Progress counts evaluated images, so its ETA holds for error-free points
    (no evaluation) and automatic searches (several) alike."""
    done = {r.key for r in rows}
    # Search steps of an 'auto' point that a killed run left unfinished are redone.
    search[:] = [r for r in search if (r.voltage, r.strategy[:-len(SEARCH)], r.seed) in done]
    pending = [pt for pt in grid.points if pt not in done]
    n, world = exp.n_images, exp.world
    with tqdm(total=n * _evaluations_ahead(exp, pending, p_of), desc=f"sweep ({len(pending)} points)",
              unit="img", disable=not (exp.progress and world.is_main)) as bar:
        for i, (v, strategy, seed) in enumerate(pending):
            mask = parse_strategy(strategy, exp.acc_bits)
            before = exp.evaluations
            rows.append(_auto_point(exp, v, p_of[v], seed, budget, search, strategy) if mask is None
                        else exp.point(v, p_of[v], mask, seed, strategy, on_error(strategy)))
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
    work = Workload({n: tuple(s) for n, s in meta["layers"].items()}, array, energy, meta.get("acc_bits", 32))
    return [dataclasses.replace(r, costs=work.costs(r.voltage, r.protected_bits, r.counts.corrected_per_layer))
            for r in rows]
