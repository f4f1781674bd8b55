"""Figures and a Markdown table from a sweep's results folder. Reads result
files only (:mod:`pyvs.results`), never models.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
                                                                   ^^^^^^
"""
from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from typing import Dict, List, Tuple

from . import plots
from .accumulator import describe_mask
from .results import PointResult, load_results
from .timing import load_table


def by_strategy(rows: List[PointResult]) -> Dict[str, List[dict]]:
    """Rows per strategy, numeric fields averaged over seeds, sorted by voltage."""
    groups: Dict[tuple, List[dict]] = defaultdict(list)
    for r in rows:
        groups[(r.strategy, r.voltage)].append(dataclasses.asdict(r))
    out: Dict[str, List[dict]] = defaultdict(list)
    for (s, v), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        avg = {k: sum(r[k] for r in rs) / len(rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
        avg.update(strategy=s, voltage=v, seeds=len(rs), protect=rs[0]["protect"])
        out[s].append(avg)
    return out


def pareto_front(points: List[Tuple[float, float]]) -> List[int]:
    """Indices of the non-dominated (energy saving, accuracy loss) points:
    higher saving and lower loss are better."""
    front = []
    for i, (s, l) in enumerate(points):
        dominated = any((s2 >= s and l2 <= l) and (s2 > s or l2 < l) for j, (s2, l2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


LATENCY_LIMIT = 0.01  # latency overhead above which a point is flagged (1 %)


def flags(r: PointResult, latency_limit: float = LATENCY_LIMIT) -> str:
    """Why a point is not the saving it may look like: it costs more energy
    than the nominal voltage, or its replays cost more latency than the limit."""
    out = []
    if r.energy_saving < 0:
        out.append("more energy than nominal")
    if r.latency_overhead > latency_limit:
        out.append(f"latency > {100 * latency_limit:g} %")
    return "; ".join(out)


def markdown_table(rows: List[PointResult], meta: dict, latency_limit: float = LATENCY_LIMIT) -> str:
    lines = ["| V | strategy | protected bits | top-1 (%) [95 % CI] | golden agreement (%) | "
             "corrected / image | injected / image | latency overhead | energy saving | flags |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (-r.voltage, r.strategy, r.seed)):
        lines.append(
            f"| {r.voltage:.3f} | {r.strategy} | {describe_mask(r.mask)} | {100 * r.top1:.1f} "
            f"[{100 * r.top1_lo:.1f}, {100 * r.top1_hi:.1f}] | {100 * r.agree:.1f} | "
            f"{r.corrected_per_image:.3g} | {r.injected_per_image:.3g} | "
            f"{100 * r.latency_overhead:.3g} % | {100 * r.energy_saving:.1f} % | {flags(r, latency_limit)} |")
    clean = meta.get("clean", {})
    nominal = meta.get("energy", {}).get("v_nominal", 0.9)
    head = (f"Fault-free: top-1 {100 * clean.get('top1', float('nan')):.1f} % on "
            f"{meta.get('n_images', '?')} images; {meta.get('macs_per_image', 0) / 1e6:.0f} M MACs and "
            f"{meta.get('base_cycles_per_image', 0) / 1e3:.0f} k cycles per image; baseline energy "
            f"{1e6 * meta.get('baseline_energy_j', float('nan')):.1f} uJ at {nominal} V. Flags: a point "
            f"that costs more energy than {nominal} V without protection, or whose replays add more "
            f"than {100 * latency_limit:g} % latency, is not a useful operating point whatever its accuracy.")
    return head + "\n\n" + "\n".join(lines) + "\n"


def report(out_dir: str, latency_limit: float = LATENCY_LIMIT) -> List[str]:
    """Writes the plots and results.md into out_dir; returns their paths.
    latency_limit: latency overhead (fraction) above which a point is flagged."""
    rows, search, meta = load_results(out_dir)
    if not rows:
        raise ValueError(f"{out_dir!r} holds no sweep results (results.json)")
    path = lambda name: os.path.join(out_dir, name)  # noqa: E731
    series = by_strategy(rows)
    title = f"{meta.get('model', 'model')} on {meta.get('n_images', '?')} images, {meta.get('freq_ghz', '?')} GHz"
    plots.accuracy_vs_voltage(series, meta.get("clean", {}).get("top1"), title, path("accuracy_vs_voltage.png"))
    plots.metric_vs_voltage(series, "energy_saving", "energy saving vs. the nominal voltage (%)",
                            path("energy_saving.png"))
    plots.metric_vs_voltage(series, "latency_overhead", "latency overhead (%)", path("latency_overhead.png"),
                            symlog=1e-3)
    points = rows + search
    xy = [(r.energy_saving, max(r.agree_loss, r.top1_loss)) for r in points]
    plots.pareto(xy, [r.voltage for r in points], [r.strategy for r in points], pareto_front(xy),
                 path("pareto.png"))
    paths = [path(n) for n in ("accuracy_vs_voltage.png", "energy_saving.png", "latency_overhead.png",
                               "pareto.png")]
    if os.path.exists(path("error_table.json")):
        plots.error_heatmap(load_table(path("error_table.json")), path("error_heatmap.png"))
        paths.append(path("error_heatmap.png"))
    with open(path("results.md"), "w") as f:
        f.write(markdown_table(rows, meta, latency_limit))
    return paths + [path("results.md")]
