"""Figures (matplotlib, PNG). They read tables and result rows, never models.

Every strategy gets its own marker, line style and marker size (hollow
markers, largest first), so that strategies with equal values stay visible
on top of each other; voltages are drawn at their real positions."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

FLOOR = 1e-20  # probabilities below this are drawn as this
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_LINES = ["-", "--", "-.", ":"]


def _save(fig, path: str) -> None:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _style(i: int, n: int) -> dict:
    """Series i of n: its marker, line style and a size that shrinks with i."""
    return dict(marker=_MARKERS[i % len(_MARKERS)], ls=_LINES[i % len(_LINES)], mfc="none",
                ms=4 + 3 * (n - 1 - i), mew=1.3, lw=1.2)


def _columns(v: Sequence[float]):
    """Cell edges for voltages v (increasing) and, per cell, the index into v
    or -1 for a gap: every voltage gets a column as wide as the closest two
    voltages are apart, centred on its value, so an uneven grid shows its gaps
    instead of stretching a column over voltages that were not computed."""
    v = np.asarray(v, dtype=float)
    width = float(np.min(np.diff(v))) if len(v) > 1 else 0.01
    edges, which = [v[0] - width / 2], []
    for i, x in enumerate(v):
        if x - width / 2 > edges[-1] + 1e-12:  # a gap before this column
            edges.append(x - width / 2)
            which.append(-1)
        edges.append(x + width / 2)
        which.append(i)
    return np.array(edges), which


def error_heatmap(table, path: str) -> None:
    """Heatmap of an ErrorTable: accumulator bit (y) versus supply voltage
    (x, volts: each voltage's column at its real position, grey where no
    voltage was computed), colour = per-MAC error probability on a log scale."""
    p = table.tensor().clamp(min=FLOOR).T.numpy()  # [W, V]
    edges, which = _columns(table.voltages)
    gap = np.full(table.acc_bits, np.nan)
    cells = np.ma.masked_invalid(np.stack([p[:, i] if i >= 0 else gap for i in which], axis=1))
    cmap = plt.get_cmap("magma").with_extremes(bad="0.85")
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    im = ax.pcolormesh(edges, np.arange(table.acc_bits + 1) - 0.5, cells, cmap=cmap,
                       norm=LogNorm(vmin=FLOOR, vmax=1.0), shading="flat")
    ax.set_xticks(table.voltages, minor=True)
    ax.set_xlabel("supply voltage (V); minor ticks: the computed voltages")
    ax.set_ylabel("accumulator bit (0 = LSB)")
    ax.set_title(f"P(bit captured wrong) per MAC, {table.freq_ghz} GHz, "
                 f"{table.acc_bits}-bit accumulator")
    fig.colorbar(im, ax=ax, label=f"error probability (values < {FLOOR:g} shown as {FLOOR:g})")
    _save(fig, path)


def accuracy_vs_voltage(series: Dict[str, List[dict]], clean_top1, title: str, path: str) -> None:
    """Top-1 (%) with its 95 % band per strategy; series: strategy -> rows
    (dicts with voltage, top1, top1_lo, top1_hi) sorted by voltage."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, (s, rs) in enumerate(series.items()):
        v = [r["voltage"] for r in rs]
        line, = ax.plot(v, [100 * r["top1"] for r in rs], label=s, **_style(i, len(series)))
        ax.fill_between(v, [100 * r["top1_lo"] for r in rs], [100 * r["top1_hi"] for r in rs],
                        color=line.get_color(), alpha=0.1)
    if clean_top1 is not None:
        ax.axhline(100 * clean_top1, color="k", ls=":", lw=1, label="fault-free")
    ax.set_xlabel("supply voltage (V)")
    ax.set_ylabel("top-1 accuracy (%), 95 % CI")
    ax.set_title(title)
    ax.invert_xaxis()
    ax.legend()
    _save(fig, path)


def metric_vs_voltage(series: Dict[str, List[dict]], key: str, ylabel: str, path: str,
                      scale: float = 100.0, symlog: float = 0.0) -> None:
    """One metric (row key, times ``scale``) against voltage per strategy.
    symlog > 0: a symmetric log axis, linear within +-symlog, so that 0
    stays 0 (a log axis has no place for it)."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, (s, rs) in enumerate(series.items()):
        ax.plot([r["voltage"] for r in rs], [scale * r[key] for r in rs], label=s, **_style(i, len(series)))
    if symlog:
        ax.set_yscale("symlog", linthresh=symlog)
        ylabel += f", log above {symlog:g}"
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("supply voltage (V)")
    ax.set_ylabel(ylabel)
    ax.invert_xaxis()
    ax.legend()
    _save(fig, path)


def pareto(points: Sequence[Tuple[float, float]], voltages: Sequence[float], strategies: Sequence[str],
           front: Sequence[int], path: str) -> None:
    """Every evaluated point as (energy saving, accuracy loss), fractions:
    marker = strategy, colour = voltage; the Pareto front (indices into
    points) drawn through and labelled with strategy and voltage."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    kinds = sorted(set(strategies))
    vmin, vmax = min(voltages), max(voltages)
    for i, s in enumerate(kinds):
        idx = [j for j, t in enumerate(strategies) if t == s]
        sc = ax.scatter([100 * points[j][0] for j in idx], [100 * points[j][1] for j in idx],
                        c=[voltages[j] for j in idx], cmap="viridis", vmin=vmin, vmax=vmax,
                        marker=_MARKERS[i % len(_MARKERS)], s=30, label=s, edgecolors="k", linewidths=0.3)
    ax.plot([100 * points[i][0] for i in front], [100 * points[i][1] for i in front], "r-", lw=1.2,
            label="Pareto front")
    for k, i in enumerate(front):  # labels alternate above and below the front, inward from the right
        ax.annotate(f"{strategies[i]} {voltages[i]:.3g} V", (100 * points[i][0], 100 * points[i][1]),
                    textcoords="offset points", xytext=(-8, 12 if k % 2 else -16), ha="right", fontsize=7,
                    arrowprops=dict(arrowstyle="-", lw=0.5, color="0.4"))
    ax.set_xlabel("energy saving vs. the nominal voltage (%)")
    ax.set_ylabel("accuracy loss (points; log scale above 0.1)")
    ax.set_title("every evaluated point: max of golden-agreement and top-1 loss")
    ax.set_yscale("symlog", linthresh=0.1)
    fig.colorbar(sc, ax=ax, label="voltage (V)")
    legend = ax.legend(fontsize=8)
    for handle in legend.legend_handles[:len(kinds)]:  # shapes only: the colour bar gives the voltage
        handle.set_array(None)
        handle.set_facecolor("0.75")
    _save(fig, path)


def slack_heatmap(m, latency_budget: float, lowest: Sequence, implied, path: str,
                  paper: Tuple[float, float] = (0.5, 1e-5), floor: float = 1e-12) -> None:
    """Slack (a :class:`pyvs.slack.SlackMap`): left, latency overhead with
    every erring bit protected against voltage, one curve per guard-band
    (log axis; overheads below ``floor`` drawn at it), the budget and the
    paper's point; right, the lowest voltage within the budget against the
    guard-band (a gap where no voltage of the grid meets it), and the
    guard-band the paper's point implies."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    cmap = plt.get_cmap("viridis")
    gmax = max(m.guard_bands) or 1.0
    for i, g in enumerate(m.guard_bands):
        y = np.maximum(100 * np.asarray(m.overhead[i]), 100 * floor)
        ax.plot(m.voltages, y, color=cmap(g / gmax), lw=1.4, label=f"guard-band {g:g}")
    ax.axhline(100 * latency_budget, color="k", ls="--", lw=0.8, label=f"budget {100 * latency_budget:g} %")
    ax.plot([paper[0]], [100 * paper[1]], "r*", ms=12, label=f"paper: {paper[0]} V, {100 * paper[1]:g} %")
    ax.set_yscale("log")
    ax.set_ylim(bottom=100 * floor / 2)
    ax.set_xlabel("supply voltage (V)")
    ax.set_ylabel(f"latency overhead (%; below {100 * floor:g} % drawn at it)")
    ax.set_title("every erring bit Razor-protected")
    ax.invert_xaxis()
    # Below the axes: inside, it would hide the curves' knees or the paper's point.
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    g = np.array(m.guard_bands, dtype=float)
    low = np.array([np.nan if v is None else v for v in lowest], dtype=float)
    bx.plot(g, low, "o-", color="C0", mfc="none", label=f"lowest V within {100 * latency_budget:g} %")
    if implied is not None:
        bx.axvline(implied, color="r", ls=":", lw=1.0, label=f"paper's point implies {implied:.3f}")
        bx.plot([implied], [paper[0]], "r*", ms=12, label=f"paper: {paper[0]} V")
    bx.set_xlabel("guard-band at 0.9 V (fraction of the worst path)")
    bx.set_ylabel("lowest supply voltage (V)")
    bx.legend(fontsize=8)
    _save(fig, path)
