"""Figures (matplotlib, PNG). They read tables and result rows, never models."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

FLOOR = 1e-20  # probabilities below this are drawn as this


def _save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def error_heatmap(table, path: str) -> None:
    """Heatmap of an ErrorTable: accumulator bit (y) versus supply voltage
    (x, volts), colour = per-MAC error probability on a log scale."""
    p = table.tensor().clamp(min=FLOOR).T.numpy()  # [W, V]
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    v = table.voltages
    half = (v[1] - v[0]) / 2 if len(v) > 1 else 0.025
    im = ax.imshow(p, origin="lower", aspect="auto", cmap="magma",
                   norm=LogNorm(vmin=FLOOR, vmax=1.0),
                   extent=(v[0] - half, v[-1] + half, -0.5, table.acc_bits - 0.5))
    ax.set_xlabel("supply voltage (V)")
    ax.set_ylabel("accumulator bit (0 = LSB)")
    ax.set_title(f"P(bit misses the clock) per MAC, {table.freq_ghz} GHz, "
                 f"{table.acc_bits}-bit accumulator")
    fig.colorbar(im, ax=ax, label=f"error probability (values < {FLOOR:g} shown as {FLOOR:g})")
    _save(fig, path)


def accuracy_vs_voltage(series: Dict[str, List[dict]], clean_top1, title: str, path: str) -> None:
    """Top-1 (%) with its 95 % band per strategy; series: strategy -> rows
    (dicts with voltage, top1, top1_lo, top1_hi) sorted by voltage."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for s, rs in series.items():
        v = [r["voltage"] for r in rs]
        ax.plot(v, [100 * r["top1"] for r in rs], marker="o", label=s)
        ax.fill_between(v, [100 * r["top1_lo"] for r in rs], [100 * r["top1_hi"] for r in rs], alpha=0.15)
    if clean_top1 is not None:
        ax.axhline(100 * clean_top1, color="k", ls=":", lw=1, label="fault-free")
    ax.set_xlabel("supply voltage (V)")
    ax.set_ylabel("top-1 accuracy (%), 95 % CI")
    ax.set_title(title)
    ax.invert_xaxis()
    ax.legend()
    _save(fig, path)


def metric_vs_voltage(series: Dict[str, List[dict]], key: str, ylabel: str, path: str,
                      scale: float = 100.0, log: bool = False) -> None:
    """One metric (row key, times ``scale``) against voltage per strategy."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for s, rs in series.items():
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


def pareto(points: Sequence[Tuple[float, float]], voltages: Sequence[float], front: Sequence[int],
           path: str) -> None:
    """Every evaluated point as (energy saving, accuracy loss), coloured by
    voltage, with the Pareto front (indices into points) drawn through."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    sc = ax.scatter([100 * x for x, _ in points], [100 * y for _, y in points], c=list(voltages),
                    cmap="viridis", s=18)
    ax.plot([100 * points[i][0] for i in front], [100 * points[i][1] for i in front], "r-", lw=1.5,
            label="Pareto front")
    ax.set_xlabel("energy saving vs. 0.9 V (%)")
    ax.set_ylabel("accuracy loss (points)")
    ax.set_title("max of golden-agreement loss and top-1 loss; every evaluated point")
    ax.set_yscale("symlog", linthresh=0.1)
    fig.colorbar(sc, ax=ax, label="voltage (V)")
    ax.legend()
    _save(fig, path)
