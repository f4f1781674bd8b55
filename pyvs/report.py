"""Figures and a Markdown table from a sweep's results folder. Reads result
files only (:mod:`pyvs.results`), never models.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
                                                                   ^^^^^^
"""
from __future__ import annotations

import json
import os
from typing import List, Optional, Tuple

from . import plots
from .accumulator import describe_mask
from .files import atomic_write
from .hardware import V_NOMINAL
from .results import PointResult, by_strategy, load_results
from .slack import SlackStudy
from .strategies import SEARCH, Budget
from .timing import load_table


def pareto_front(points: List[Tuple[float, float]]) -> List[int]:
    """Indices of the non-dominated (energy saving, accuracy loss) points:
    higher saving and lower loss are better."""
    front = []
    for i, (s, l) in enumerate(points):
        dominated = any((s2 >= s and l2 <= l) and (s2 > s or l2 < l) for j, (s2, l2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def flags(r: PointResult, budget: Budget = Budget()) -> str:
    """Why a point is not an operating point within ``budget``: it costs more
    energy than the nominal supply, its replays cost more latency, or it
    loses more top-1 or golden agreement than the budget allows."""
    out = []
    if r.costs.energy_saving < 0:
        out.append("more energy than nominal")
    if r.costs.latency_overhead > budget.latency:
        out.append(f"latency > {100 * budget.latency:g} %")
    if r.accuracy.top1_loss > budget.accuracy + 1e-12:
        out.append(f"top-1 loss > {100 * budget.accuracy:g} points")
    if r.accuracy.agree_loss > budget.accuracy + 1e-12:
        out.append(f"agreement loss > {100 * budget.accuracy:g} points")
    return "; ".join(out)


def verdict(rows: List[PointResult], budget: Budget = Budget()) -> Optional[PointResult]:
    """The answer of a sweep: the point at the lowest voltage that meets the
    budget (no flag), the largest energy saving among those; None if none does."""
    ok = [r for r in rows if not flags(r, budget) and not r.strategy.endswith(SEARCH)]
    return min(ok, key=lambda r: (r.voltage, -r.costs.energy_saving, r.strategy), default=None)


def verdict_line(rows: List[PointResult], budget: Budget = Budget()) -> str:
    within = (f"within {100 * budget.accuracy:g} points of top-1 and of golden agreement and "
              f"{100 * budget.latency:g} % latency")
    best = verdict(rows, budget)
    if best is None:
        return f"No point is {within}."
    bits = describe_mask(best.mask)
    bits = bits if bits == "none" else ("bit " if bits.isdigit() else "bits ") + bits
    return (f"Lowest voltage {within}: {best.voltage:.3f} V, {best.strategy} (protects {bits}), "
            f"{100 * best.costs.energy_saving:.1f} % less energy, "
            f"{100 * best.costs.latency_overhead:.3g} % latency, top-1 {100 * best.accuracy.top1:.1f} %.")


def markdown_table(rows: List[PointResult], meta: dict, budget: Budget = Budget()) -> str:
    lines = ["| V | strategy | protected bits | top-1 (%) [95 % CI] | golden agreement (%) | "
             "corrected / image | injected / image | latency overhead | energy saving | "
             "energy, uJ: dynamic / leakage / movement / Razor | flags |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (-r.voltage, r.strategy, r.seed)):
        a, c, k = r.accuracy, r.counts, r.costs
        lines.append(
            f"| {r.voltage:.3f} | {r.strategy} | {describe_mask(r.mask)} | {100 * a.top1:.1f} "
            f"[{100 * a.top1_lo:.1f}, {100 * a.top1_hi:.1f}] | {100 * a.agree:.1f} | "
            f"{c.corrected_per_image:.3g} | {c.injected_per_image:.3g} | "
            f"{100 * k.latency_overhead:.3g} % | {100 * k.energy_saving:.1f} % | "
            f"{1e6 * k.energy_dynamic_j:.3g} / {1e6 * k.energy_leakage_j:.3g} / {1e6 * k.energy_movement_j:.3g} / "
            f"{1e6 * k.energy_razor_j:.3g} | "
            f"{flags(r, budget)} |")
    return _head(meta, budget) + "\n\n" + "\n".join(lines) + "\n\n" + verdict_line(rows, budget) + "\n"


def _head(meta: dict, budget: Budget) -> str:
    clean = meta.get("clean", {})
    nominal = meta.get("array", {}).get("v_nominal", V_NOMINAL)
    timing = meta.get("timing", {}).get("model") or meta.get("timing_model", "?")
    timing += f"; {meta.get('array', {}).get('dataflow', 'ws')} dataflow"
    base = meta.get("baseline_energy", {})
    energy = (f"; of that {100 * base['dynamic_j'] / base['total_j']:.0f} % dynamic, "
              f"{100 * base.get('movement_j', 0.0) / base['total_j']:.0f} % data movement between PEs and "
              f"{100 * base['leakage_j'] / base['total_j']:.0f} % leakage: the array is "
              f"{100 * meta.get('utilization', float('nan')):.2g} % busy" if base else "")
    return (f"Fault-free: top-1 {100 * clean.get('top1', float('nan')):.1f} % on "
            f"{meta.get('n_images', '?')} images; {meta.get('macs_per_image', 0) / 1e6:.0f} M MACs and "
            f"{meta.get('base_cycles_per_image', 0) / 1e3:.0f} k cycles per image; timing model {timing}. "
            f"Baseline energy {1e6 * meta.get('baseline_energy_j', float('nan')):.1f} uJ per image at {nominal} V"
            f"{energy}. Flags: a point that costs more energy than {nominal} V without protection, whose replays "
            f"add more than {100 * budget.latency:g} % latency, or that loses more than "
            f"{100 * budget.accuracy:g} points of top-1 or of golden agreement is not an operating point "
            "within the budget.")


def report(out_dir: str, budget: Budget = Budget()) -> List[str]:
    """Writes the plots and results.md into out_dir; returns their paths.
    ``budget``: what a point must meet not to be flagged (and the verdict)."""
    rows, search, meta = load_results(out_dir)
    if not rows:
        raise ValueError(f"{out_dir!r} holds no sweep results (results.json)")
    path = lambda name: os.path.join(out_dir, name)  # noqa: E731
    series = by_strategy(rows)
    model = meta.get("timing", {}).get("model") or meta.get("timing_model", "?")
    title = (f"{meta.get('model', 'model')} on {meta.get('n_images', '?')} images, "
             f"{meta.get('array', {}).get('freq_ghz', '?')} GHz, {model} timing model")
    plots.accuracy_vs_voltage(series, meta.get("clean", {}).get("top1"), title, path("accuracy_vs_voltage.png"))
    plots.agreement_vs_voltage(series, title, path("agreement_vs_voltage.png"))
    plots.metric_vs_voltage(series, "energy_saving", "energy saving vs. the nominal voltage (%)",
                            path("energy_saving.png"), title=title)
    plots.metric_vs_voltage(series, "latency_overhead", "latency overhead (%)", path("latency_overhead.png"),
                            symlog=1e-3, title=title)
    points = rows + search
    xy = [(r.costs.energy_saving, max(r.accuracy.agree_loss, r.accuracy.top1_loss)) for r in points]
    plots.pareto(xy, [r.voltage for r in points], [r.strategy for r in points], pareto_front(xy),
                 path("pareto.png"), title)
    paths = [path(n) for n in ("accuracy_vs_voltage.png", "agreement_vs_voltage.png", "energy_saving.png",
                               "latency_overhead.png", "pareto.png")]
    if os.path.exists(path("error_table.json")):
        plots.error_heatmap(load_table(path("error_table.json")), path("error_heatmap.png"))
        paths.append(path("error_heatmap.png"))
    with open(path("results.md"), "w") as f:
        f.write(markdown_table(rows, meta, budget))
    return paths + [path("results.md")]


def slack_report(study: SlackStudy, out_dir: str) -> List[str]:
    """Writes ``pyvs slack``'s slack.json and slack.png into out_dir;
    returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "slack.json"), os.path.join(out_dir, "slack.png")]
    atomic_write(paths[0], json.dumps(study.record(), indent=1))
    lowest = [r["lowest_v_all_protected"] for r in study.summary]
    plots.slack_heatmap(study.map, study.settings["latency_budget"], lowest, study.implied_guard_band, paths[1],
                        model=study.settings["timing"]["model"])
    return paths


def schedule_table(choices, meta: dict) -> str:
    """The joint search's table: per latency budget, each family's chosen
    configuration on the report images (search images in brackets)."""
    from .schedule import describe
    kinds = meta.get("kinds", {})
    lines = [f"Searched on {meta.get('search_images')} images, reported on the other {meta.get('report_images')} "
             f"(95 % intervals); accuracy budget {100 * meta['config']['accuracy']:g} points of top-1 and of golden "
             "agreement.", "",
             "| latency budget | configuration | supplies | protected bits | on error | top-1 (%) [95 % CI] | "
             "agreement (%) | latency | energy saving | search: saving, latency | evaluations |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in choices:
        r, s = c.report, c.search
        volts = sorted(set(s.schedule.values()))
        supplies = f"{volts[0]:g} V" if len(volts) == 1 else describe(s.schedule, kinds)
        lines.append(f"| {100 * c.latency_budget:g} % | {c.family} | {supplies} | {describe_mask(s.mask)} | "
                     f"{s.on_error} | {100 * r.accuracy.top1:.1f} [{100 * r.accuracy.top1_lo:.1f}, "
                     f"{100 * r.accuracy.top1_hi:.1f}] | {100 * r.accuracy.agree:.1f} | "
                     f"{100 * r.costs.latency_overhead:.3g} % | {100 * r.costs.energy_saving:.2f} % | "
                     f"{100 * s.costs.energy_saving:.2f} %, {100 * s.costs.latency_overhead:.3g} % | "
                     f"{c.evaluations} |")
    return "\n".join(lines) + "\n"


def schedule_report(out_dir: str) -> List[str]:
    """Writes the joint search's schedule.md, schedule_voltages.png and
    schedule_pareto.png into out_dir; returns their paths."""
    from .schedule_search import META, load_chosen, search_rows
    choices = load_chosen(out_dir)
    with open(os.path.join(out_dir, META)) as f:
        meta = json.load(f)
    path = lambda name: os.path.join(out_dir, name)  # noqa: E731
    kinds = meta["kinds"]
    picked = {f"{c.family}, latency budget {100 * c.latency_budget:g} %: saving "
              f"{100 * c.report.costs.energy_saving:.2f} %": c.search.schedule
              for c in choices if c.family.startswith("schedule") and c.report}
    model = meta.get("model", "MobileNetV2")
    if picked:
        plots.schedule_voltages(picked, kinds, f"{model}: the supply of every layer in the chosen schedules",
                                path("schedule_voltages.png"))
    points = {}
    for split, r in search_rows(out_dir):
        if split == "search":
            family = r.strategy[:-len("-search")] if r.strategy.endswith("-search") else r.strategy
            points.setdefault(family, []).append((r.costs.energy_saving,
                                                  max(r.accuracy.top1_loss, r.accuracy.agree_loss)))
    chosen = {}
    for c in sorted(choices, key=lambda c: c.latency_budget):  # the loosest latency budget's choice per family
        chosen[c.family] = (c.search.costs.energy_saving, max(c.search.accuracy.top1_loss, c.search.accuracy.agree_loss))
    loosest = max(c.latency_budget for c in choices) if choices else 0
    plots.families_pareto(points, chosen, f"{model}: every point the joint search evaluated on its "
                          f"{meta.get('search_images')} search images\n(filled: the choice within "
                          f"{100 * loosest:g} % latency)", path("schedule_pareto.png"))
    with open(path("schedule.md"), "w") as f:
        f.write(schedule_table(choices, meta))
    out = [path("schedule_pareto.png"), path("schedule.md")]
    return ([path("schedule_voltages.png")] if picked else []) + out
