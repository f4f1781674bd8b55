"""Figures and a Markdown table from a sweep's results folder. Reads result
files only, never models.

    voltage -> error table -> op -> layer -> model -> evaluation -> report
                                                                   ^^^^^^
"""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Dict, List

from .plots import plt
from .selection import pareto_front
from .sweep import load_results


def _by_strategy(rows: List[dict]) -> Dict[str, List[dict]]:
    """Rows per strategy, averaged over seeds, sorted by voltage."""
    groups: Dict[tuple, List[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["strategy"], r["voltage"])].append(r)
    out: Dict[str, List[dict]] = defaultdict(list)
    for (s, v), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        avg = {k: sum(r[k] for r in rs) / len(rs) for k in rs[0] if isinstance(rs[0][k], (int, float))}
        avg.update(strategy=s, voltage=v, seeds=len(rs), protect=rs[0]["protect"])
        out[s].append(avg)
    return out


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_accuracy(rows, meta, path):
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for s, rs in _by_strategy(rows).items():
        v = [r["voltage"] for r in rs]
        ax.plot(v, [100 * r["top1"] for r in rs], marker="o", label=s)
        ax.fill_between(v, [100 * r["top1_lo"] for r in rs], [100 * r["top1_hi"] for r in rs], alpha=0.15)
    if meta.get("clean"):
        ax.axhline(100 * meta["clean"]["top1"], color="k", ls=":", lw=1, label="fault-free")
    ax.set_xlabel("supply voltage (V)")
    ax.set_ylabel("top-1 accuracy (%), 95 % CI")
    ax.set_title(f"{meta.get('model', 'model')} on {meta.get('n_images', '?')} images, "
                 f"{meta.get('freq_ghz', '?')} GHz")
    ax.invert_xaxis()
    ax.legend()
    _save(fig, path)


def plot_metric(rows, key, ylabel, path, scale=100.0, log=False):
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for s, rs in _by_strategy(rows).items():
        ys = [scale * r[key] for r in rs]
        if log:
            ys = [max(y, 1e-12) for y in ys]
        ax.plot([r["voltage"] for r in rs], ys, marker="o", label=s)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("supply voltage (V)")
    ax.set_ylabel(ylabel)
    ax.invert_xaxis()
    ax.legend()
    _save(fig, path)


def plot_pareto(rows, search, path):
    pts = rows + search
    xy = [(r["energy_saving"], max(r["agree_loss"], r["top1_loss"])) for r in pts]
    front = pareto_front(xy)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    sc = ax.scatter([100 * x for x, _ in xy], [100 * y for _, y in xy], c=[r["voltage"] for r in pts],
                    cmap="viridis", s=18)
    ax.plot([100 * xy[i][0] for i in front], [100 * xy[i][1] for i in front], "r-", lw=1.5,
            label="Pareto front")
    ax.set_xlabel("energy saving vs. 0.9 V (%)")
    ax.set_ylabel("accuracy loss (points)")
    ax.set_title("max of golden-agreement loss and top-1 loss; every evaluated point")
    ax.set_yscale("symlog", linthresh=0.1)
    fig.colorbar(sc, ax=ax, label="voltage (V)")
    ax.legend()
    _save(fig, path)


def markdown_table(rows: List[dict], meta: dict) -> str:
    lines = ["| V | strategy | protected bits | top-1 (%) [95 % CI] | golden agreement (%) | "
             "corrected / image | injected / image | latency overhead | energy saving |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (-r["voltage"], r["strategy"], r["seed"])):
        bits = [b for b in range(32) if int(r["protect"], 16) >> b & 1]
        bits_s = "none" if not bits else (f"{bits[0]}-{bits[-1]}" if bits == list(range(bits[0], bits[-1] + 1))
                                         else ",".join(map(str, bits)))
        lines.append(
            f"| {r['voltage']:.3f} | {r['strategy']} | {bits_s} | {100 * r['top1']:.1f} "
            f"[{100 * r['top1_lo']:.1f}, {100 * r['top1_hi']:.1f}] | {100 * r['agree']:.1f} | "
            f"{r['corrected_per_image']:.3g} | {r['injected_per_image']:.3g} | "
            f"{100 * r['latency_overhead']:.3g} % | {100 * r['energy_saving']:.1f} % |")
    clean = meta.get("clean", {})
    head = (f"Fault-free: top-1 {100 * clean.get('top1', float('nan')):.1f} % on "
            f"{meta.get('n_images', '?')} images; {meta.get('macs_per_image', 0) / 1e6:.0f} M MACs and "
            f"{meta.get('base_cycles_per_image', 0) / 1e3:.0f} k cycles per image; baseline energy "
            f"{1e6 * meta.get('baseline_energy_j', float('nan')):.1f} uJ at "
            f"{meta.get('energy', {}).get('v_nominal', 0.9)} V.")
    return head + "\n\n" + "\n".join(lines) + "\n"


def report(out_dir: str) -> List[str]:
    """Writes the plots and results.md into out_dir; returns their paths."""
    rows, search, meta = load_results(out_dir)
    if not rows:
        raise ValueError(f"{out_dir!r} holds no sweep results (results.json)")
    paths = []
    p = os.path.join(out_dir, "accuracy_vs_voltage.png")
    plot_accuracy(rows, meta, p)
    paths.append(p)
    p = os.path.join(out_dir, "energy_saving.png")
    plot_metric(rows, "energy_saving", "energy saving vs. 0.9 V (%)", p)
    paths.append(p)
    p = os.path.join(out_dir, "latency_overhead.png")
    plot_metric(rows, "latency_overhead", "latency overhead (%)", p, log=True)
    paths.append(p)
    p = os.path.join(out_dir, "pareto.png")
    plot_pareto(rows, search, p)
    paths.append(p)
    table_path = os.path.join(out_dir, "error_table.json")
    if os.path.exists(table_path):
        from .plots import error_heatmap
        from .timing import load_table
        p = os.path.join(out_dir, "error_heatmap.png")
        error_heatmap(load_table(table_path), p)
        paths.append(p)
    p = os.path.join(out_dir, "results.md")
    with open(p, "w") as f:
        f.write(markdown_table(rows, meta))
    paths.append(p)
    return paths
