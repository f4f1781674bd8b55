"""The paper's experiment: accuracy, latency and energy across supply
voltages and protection strategies, resumable.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
    (this module drives the whole chain for a grid of points)

For each point (voltage, strategy, seed): the timing model's per-bit
probabilities at that voltage, the protect mask of the strategy (searched for
'auto', see :mod:`pyvs.selection`), one faulty evaluation against the golden
run, and the latency and energy models fed with the measured corrected
errors. Rows are written as each point finishes: ``results.json`` and
``results.csv`` are replaced atomically (written to a temporary file,
fsynced, renamed), so a run killed at any moment leaves complete files, and
a new run with the same out_dir skips the points already there.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from . import timing
from .energy import EnergyParams, inference_energy
from .evaluate import evaluate
from .latency import ArrayConfig, latency_overhead, model_cycles
from .nn.config import FaultConfig, fault_stats, set_faults, systolic_layers
from .selection import auto_select, parse_strategy

_PAUSE = float(os.environ.get("PYVS_SWEEP_PAUSE", "0") or 0)
V_MAX = 1.2  # volts: the timing model is calibrated at 0.9 V; above 1.2 V it is not meant to go

_SEARCH = "search.json"
_RESULTS = "results.json"
_CSV = "results.csv"
_META = "meta.json"
_GOLDEN = "golden.pt"


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_rows(out_dir: str, rows: List[dict], search: List[dict]) -> None:
    _atomic_write(os.path.join(out_dir, _RESULTS), json.dumps(rows, indent=1))
    _atomic_write(os.path.join(out_dir, _SEARCH), json.dumps(search, indent=1))
    if rows:
        fields = list(rows[0].keys())
        tmp = os.path.join(out_dir, f"{_CSV}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(out_dir, _CSV))


def load_results(out_dir: str):
    """(rows, search rows, meta) of a sweep's results folder."""
    if not os.path.isdir(out_dir):
        raise ValueError(f"results folder {out_dir!r} does not exist")
    def read(name, default):
        path = os.path.join(out_dir, name)
        if not os.path.exists(path):
            return default
        with open(path) as f:
            return json.load(f)
    return read(_RESULTS, []), read(_SEARCH, []), read(_META, {})


def check_grid(voltages: Sequence[float], strategies: Sequence[str], budget: float, acc_bits: int,
               tech: timing.TechParams) -> List[float]:
    """Validates the sweep's grid; returns the voltages as floats."""
    if voltages is None or len(voltages) == 0:
        raise ValueError("the voltage grid is empty")
    try:
        v = [float(x) for x in voltages]
    except (TypeError, ValueError):
        raise ValueError(f"the voltage grid {voltages!r} is not a list of numbers") from None
    if len(set(v)) != len(v):
        raise ValueError(f"the voltage grid has repeated voltages: {v}")
    for x in v:
        if not (math.isfinite(x) and tech.vth < x <= V_MAX):
            raise ValueError(f"voltage {x} V is outside the timing model's range ({tech.vth}, {V_MAX}] V")
    if not strategies:
        raise ValueError("no protection strategy given")
    for s in strategies:
        parse_strategy(s, acc_bits)
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget >= 0):
        raise ValueError(f"the accuracy-loss budget must be >= 0, got {budget}")
    return v


def _check_writable(out_dir: str) -> None:
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, ".write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"cannot write to the output folder {out_dir!r}: {e.strerror or e}") from None


def sweep(model: torch.nn.Module, batches, out_dir: str, voltages: Sequence[float],
          strategies: Sequence[str] = ("none", "all", "auto"), seeds: Sequence[int] = (0,),
          freq_ghz: float = 0.7, acc_bits: int = 32, budget: float = 0.003,
          array: Optional[ArrayConfig] = None, energy: EnergyParams = EnergyParams(),
          timing_options: Optional[dict] = None, device: str = "cpu", progress: bool = True,
          meta: Optional[dict] = None,
          probabilities: Optional[Callable[[List[float]], torch.Tensor]] = None) -> List[dict]:
    """Runs (or resumes) a sweep; returns all its rows.

    Args:
        model: a converted model (systolic layers), eval mode.
        batches: list of (float images [B, 3, H, W], int64 labels [B]), in order.
        out_dir: results folder (created; resumed if it holds this sweep).
        voltages: volts; strategies: see :mod:`pyvs.selection`; seeds: ints.
        freq_ghz: GHz; acc_bits: bits; budget: accuracy-loss budget of 'auto'
            (fraction: 0.003 = 0.3 points).
        array, energy: latency and energy model parameters.
        timing_options: keyword options of :func:`pyvs.timing.error_probabilities`.
        probabilities: replaces the timing model (voltages -> float64 [V, W]),
            for studies with hand-made error rates.
    """
    timing_options = dict(timing_options or {})
    array = array or ArrayConfig(freq_ghz=freq_ghz)
    tech = timing._split_options(timing_options)[0]
    volts = check_grid(voltages, strategies, budget, acc_bits, tech)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seed given")
    _check_writable(out_dir)
    layers = systolic_layers(model)
    if not layers:
        raise ValueError("the model has no systolic layers: convert it with pyvs.convert first")
    for name, layer in layers:
        if layer.acc_bits != acc_bits:
            raise ValueError(f"layer {name!r} has a {layer.acc_bits}-bit accumulator, the sweep {acc_bits}")

    n_images = sum(len(y) for _, y in batches)
    config = {"voltages": volts, "strategies": list(strategies), "seeds": seeds, "freq_ghz": freq_ghz,
              "acc_bits": acc_bits, "budget": budget, "n_images": n_images,
              "array": vars(array).copy(), "energy": vars(energy).copy(), "timing_options": timing_options,
              **(meta or {})}
    rows, search, old_meta = load_results(out_dir)
    for key in ("n_images", "freq_ghz", "acc_bits", "budget", "array", "energy", "timing_options", "model"):
        if old_meta and key in old_meta and old_meta.get(key) != config.get(key):
            raise ValueError(f"{out_dir!r} holds a sweep with another {key} ({old_meta.get(key)!r}); "
                             "use a new output folder")

    # The golden (fault-free) run, cached: resuming must not change it.
    golden_path = os.path.join(out_dir, _GOLDEN)
    set_faults(model, None)
    if os.path.exists(golden_path):
        golden = torch.load(golden_path)
        clean = golden["clean"]
        # one forward to learn the layers' GEMM shapes
        with torch.no_grad():
            model(batches[0][0][:1].to(device))
    else:
        clean = evaluate(model, batches, device=device, desc="golden run", progress=progress)
        golden = {"pred": clean.pop("pred"), "clean": clean}
        torch.save(golden, golden_path)
    shapes = {n: l.gemm_shape for n, l in layers}
    base = model_cycles(shapes, array)
    base_total = sum(base.values())
    macs = sum(G * M * K * N for G, M, K, N in shapes.values())
    baseline = inference_energy(energy.v_nominal, macs, base_total, 0, 0.0, energy, array)["total"]

    if probabilities is None:
        table = timing.make_table(sorted(volts), freq_ghz, acc_bits, **timing_options)
        timing.save_table(table, os.path.join(out_dir, "error_table.json"))
        p_of = {v: table.p_bits(v) for v in volts}
    else:
        pt = probabilities(volts)
        p_of = {v: pt[i].to(torch.float64) for i, v in enumerate(volts)}

    config.update({"clean": clean, "macs_per_image": macs, "base_cycles_per_image": base_total,
                   "baseline_energy_j": baseline, "layers": {n: list(s) for n, s in shapes.items()}})
    _atomic_write(os.path.join(out_dir, _META), json.dumps(config, indent=1))

    # Masks that agree on the bits that can err give the same events and the
    # same outputs: each (voltage, seed, effective mask) is evaluated once.
    evaluated: Dict[tuple, tuple] = {}

    def measure(v: float, mask: int, seed: int, strategy: str) -> dict:
        p = p_of[v]
        erring = sum(1 << b for b in range(acc_bits) if float(p[b]) > 0)
        key = (v, seed, mask & erring)
        if key in evaluated:
            row, per_layer_corr = evaluated[key]
        elif not bool((p > 0).any()):
            # No bit can err: no event is drawn at all, the run IS the golden run.
            row = dict(clean)
            row.update(agree=1.0, agree_lo=1.0, agree_hi=1.0, injected=0, corrected=0,
                       injected_per_bit=[0] * acc_bits, corrected_per_bit=[0] * acc_bits, seconds=0.0)
            per_layer_corr = {}
        else:
            set_faults(model, FaultConfig(p, protect=mask, seed=seed, rows=array.rows))
            row = evaluate(model, batches, golden=golden["pred"], device=device,
                           desc=f"{v:.3f} V {strategy} {mask:#x}", progress=progress)
            row.pop("pred")
            per_layer_corr = {n: float(s[1].sum()) / n_images for n, s in fault_stats(model).items()}
            set_faults(model, None)
        evaluated[key] = (row, per_layer_corr)
        replays = row["corrected"] / n_images
        _, overhead = latency_overhead(base, per_layer_corr, array)
        e = inference_energy(v, macs, base_total, bin(mask).count("1"), replays, energy, array)
        out = {"voltage": v, "strategy": strategy, "seed": seed, "protect": f"{mask:#010x}",
               "protected_bits": bin(mask).count("1"), "n": row["n"],
               "top1": row["top1"], "top1_lo": row["top1_lo"], "top1_hi": row["top1_hi"],
               "top5": row["top5"], "top5_lo": row["top5_lo"], "top5_hi": row["top5_hi"],
               "agree": row["agree"], "agree_lo": row["agree_lo"], "agree_hi": row["agree_hi"],
               "top1_loss": clean["top1"] - row["top1"], "agree_loss": 1.0 - row["agree"],
               "injected": row["injected"], "corrected": row["corrected"],
               "injected_per_image": row["injected"] / n_images, "corrected_per_image": replays,
               "latency_overhead": overhead, "energy_j": e["total"],
               "energy_saving": 1.0 - e["total"] / baseline,
               "energy_dynamic_j": e["dynamic"], "energy_leakage_j": e["leakage"],
               "energy_razor_j": e["razor"], "energy_replay_j": e["replay"],
               "max_p": float(p.max()), "injected_per_bit": row["injected_per_bit"],
               "corrected_per_bit": row["corrected_per_bit"], "evaluations": 1,
               "seconds": row["seconds"]}
        return out

    done = {(r["voltage"], r["strategy"], r["seed"]) for r in rows}
    # Search steps of an 'auto' point that a killed run left unfinished are redone.
    search = [r for r in search if (r["voltage"], "auto", r["seed"]) in done]
    points = [(v, s, sd) for v in volts for s in strategies for sd in seeds]
    with tqdm(total=len(points), desc="sweep points", unit="pt", disable=not progress) as bar:
        for v, strategy, seed in points:
            if (v, strategy, seed) in done:
                bar.update(1)
                continue
            mask = parse_strategy(strategy, acc_bits)
            if mask is None:
                def trial(m, v=v, seed=seed):
                    r = measure(v, m, seed, "auto-search")
                    search.append(r)
                    return r
                mask, tried = auto_select(trial, p_of[v], clean["top1"], budget)
                row = dict(next(r for m, r in reversed(tried) if m == mask)) if tried else \
                    measure(v, mask, seed, "auto")
                row["strategy"] = "auto"
                row["evaluations"] = max(1, len(tried))  # masks tried by the search
            else:
                row = measure(v, mask, seed, strategy)
            rows.append(row)
            _write_rows(out_dir, rows, search)
            bar.update(1)
            if _PAUSE:  # testing aid: time for a test to kill the run between points
                time.sleep(_PAUSE)
    return rows


def rescore(out_dir: str, array: ArrayConfig, energy: EnergyParams = EnergyParams()) -> List[dict]:
    """The rows of a finished sweep with latency and energy recomputed for
    another array or energy model, from the measured replays per image and
    the layers' GEMM shapes (accuracy is unchanged: the events do not depend
    on these models). Nothing is written."""
    rows, _, meta = load_results(out_dir)
    if not rows or "layers" not in meta:
        raise ValueError(f"{out_dir!r} holds no finished sweep")
    shapes = {n: tuple(s) for n, s in meta["layers"].items()}
    base_total = sum(model_cycles(shapes, array).values())
    macs = meta["macs_per_image"]
    baseline = inference_energy(energy.v_nominal, macs, base_total, 0, 0.0, energy, array)["total"]
    out = []
    for r in rows:
        replays = r["corrected_per_image"]
        e = inference_energy(r["voltage"], macs, base_total, r["protected_bits"], replays, energy, array)
        out.append(dict(r, latency_overhead=replays * array.replay_cycles / base_total,
                        energy_j=e["total"], energy_saving=1.0 - e["total"] / baseline))
    return out
