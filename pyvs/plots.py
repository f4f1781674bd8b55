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


def error_heatmap(table, path: str, model: str = "") -> None:
    """Heatmap of an ErrorTable: accumulator bit (y) versus supply voltage
    (x, volts, increasing to the right as in every figure: each voltage's
    column at its real position, grey where no voltage was computed),
    colour = per-MAC error probability on a log scale. ``model``: the timing
    model's name for the title (default: the table's own record)."""
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
    model = model or table.params.get("model", "?")
    what = "of the layers, MAC-weighted" if table.layers else "per MAC"
    ax.set_title(f"P(bit captured wrong) {what}, {model} timing model\n"
                 f"{table.freq_ghz} GHz, {table.acc_bits}-bit accumulator", fontsize=10)
    fig.colorbar(im, ax=ax, label=f"error probability (values < {FLOOR:g} shown as {FLOOR:g})")
    _save(fig, path)


def _zoom(series: Dict[str, List[dict]]):
    """(lo, hi) voltages around where the strategies differ (some point
    has timing errors), one grid voltage beyond on each side; None when
    that is most of the range anyway."""
    volts = sorted({r["voltage"] for rs in series.values() for r in rs})
    busy = sorted({r["voltage"] for rs in series.values() for r in rs
                   if r.get("injected_per_image", 0) > 0 or r.get("corrected_per_image", 0) > 0})
    if len(volts) < 3 or not busy:
        return None
    i, j = volts.index(busy[0]), volts.index(busy[-1])
    lo, hi = volts[max(i - 1, 0)], volts[min(j + 1, len(volts) - 1)]
    if hi - lo > 0.6 * (volts[-1] - volts[0]):
        return None
    pad = 0.1 * (hi - lo) or 0.005
    return lo - pad, hi + pad


def _panels(series, height: float = 4.5):
    """A figure with the full voltage range and, where the action is narrow,
    a zoomed panel beside it: (fig, axes, zoom range or None)."""
    zoom = _zoom(series)
    if zoom is None:
        fig, ax = plt.subplots(figsize=(7, height), dpi=120)
        return fig, [ax], None
    fig, axes = plt.subplots(1, 2, figsize=(12, height), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    return fig, list(axes), zoom


def _finish_panels(fig, axes, zoom, ylabel: str, title: str, path: str) -> None:
    """Labels the first panel, zooms the second (if any) and saves."""
    axes[0].set_ylabel(ylabel)
    axes[0].set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    if zoom:
        axes[1].set_xlim(*zoom)
        axes[1].set_title("zoom: where timing errors occur", fontsize=10)
    _save(fig, path)


def _band_plot(series, key: str, ylabel: str, title: str, path: str, reference=None, ref_label="") -> None:
    """key (a fraction) in %, with its 95 % band (key_lo, key_hi), per strategy."""
    fig, axes, zoom = _panels(series)
    for ax in axes:
        for i, (s, rs) in enumerate(series.items()):
            v = [r["voltage"] for r in rs]
            line, = ax.plot(v, [100 * r[key] for r in rs], label=s, **_style(i, len(series)))
            ax.fill_between(v, [100 * r[key + "_lo"] for r in rs], [100 * r[key + "_hi"] for r in rs],
                            color=line.get_color(), alpha=0.1)
        if reference is not None:
            ax.axhline(100 * reference, color="k", ls=":", lw=1, label=ref_label)
        ax.set_xlabel("supply voltage (V)")
    _finish_panels(fig, axes, zoom, ylabel, title, path)


def accuracy_vs_voltage(series: Dict[str, List[dict]], clean_top1, title: str, path: str) -> None:
    """Top-1 (%) with its 95 % band per strategy; series: strategy -> rows
    (dicts with voltage, top1, top1_lo, top1_hi) sorted by voltage."""
    _band_plot(series, "top1", "top-1 accuracy (%), 95 % CI", title, path, clean_top1, "fault-free")


def agreement_vs_voltage(series: Dict[str, List[dict]], title: str, path: str) -> None:
    """Top-1 agreement with the golden run (%) with its 95 % band per
    strategy: what the errors change, which top-1 on labels can hide (a
    model that always errs the same way keeps its top-1 on random labels)."""
    _band_plot(series, "agree", "top-1 agreement with the fault-free run (%), 95 % CI", title, path, 1.0,
               "no prediction changed")


def metric_vs_voltage(series: Dict[str, List[dict]], key: str, ylabel: str, path: str,
                      scale: float = 100.0, symlog: float = 0.0, title: str = "") -> None:
    """One metric (row key, times ``scale``) against voltage per strategy.
    symlog > 0: a symmetric log axis, linear within +-symlog, so that 0
    stays 0 (a log axis has no place for it)."""
    fig, axes, zoom = _panels(series)
    for ax in axes:
        for i, (s, rs) in enumerate(series.items()):
            ax.plot([r["voltage"] for r in rs], [scale * r[key] for r in rs], label=s,
                    **_style(i, len(series)))
        if symlog:
            ax.set_yscale("symlog", linthresh=symlog)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlabel("supply voltage (V)")
    _finish_panels(fig, axes, zoom, ylabel + (f", log above {symlog:g}" if symlog else ""), title, path)


def _voltage_colours(voltages: Sequence[float]) -> Dict[float, tuple]:
    """One distinct colour per voltage (a sequential map sampled evenly over
    the distinct voltages, not over their values: 0.51 and 0.52 V stay apart)."""
    distinct = sorted(set(voltages))
    cmap = plt.get_cmap("viridis")
    return {v: cmap(i / max(len(distinct) - 1, 1)) for i, v in enumerate(distinct)}


def pareto(points: Sequence[Tuple[float, float]], voltages: Sequence[float], strategies: Sequence[str],
           front: Sequence[int], path: str, title: str = "") -> None:
    """Every evaluated point as (energy saving, accuracy loss), fractions:
    marker = strategy, colour = voltage (one colour per distinct voltage);
    the Pareto front (indices into points) drawn through and labelled with
    strategy and voltage, the labels stacked apart."""
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    kinds = sorted(set(strategies))
    colour = _voltage_colours(voltages)
    for i, s in enumerate(kinds):
        idx = [j for j, t in enumerate(strategies) if t == s]
        ax.scatter([100 * points[j][0] for j in idx], [100 * points[j][1] for j in idx],
                   c=[colour[voltages[j]] for j in idx], marker=_MARKERS[i % len(_MARKERS)], s=34,
                   edgecolors="k", linewidths=0.3)
    ax.plot([100 * points[i][0] for i in front], [100 * points[i][1] for i in front], "r-", lw=1.2)
    # One label per distinct front point (points that coincide share it), in
    # a column inside the axes, ordered as the points are and evenly spaced,
    # each joined to its point by a leader: no two labels overlap.
    labels: Dict[tuple, List[str]] = {}
    for i in front:
        key = (points[i][0], points[i][1], voltages[i])
        labels.setdefault(key, [])
        if strategies[i] not in labels[key]:
            labels[key].append(strategies[i])
    ordered = sorted(labels.items(), key=lambda kv: (kv[0][1], -kv[0][0]))
    for k, ((x, y, v), names) in enumerate(ordered):
        ax.annotate(f"{', '.join(names)} {v:.3g} V", (100 * x, 100 * y), xycoords="data",
                    xytext=(0.45, 0.12 + 0.76 * k / max(len(ordered) - 1, 1)), textcoords="axes fraction",
                    ha="right", va="center", fontsize=7, arrowprops=dict(arrowstyle="-", lw=0.5, color="0.4"))
    ax.set_xlabel("energy saving vs. the nominal voltage (%)")
    ax.set_ylabel("accuracy loss (points; log scale above 0.1)")
    ax.set_title("every evaluated point: max of golden-agreement and top-1 loss" + (f"\n{title}" if title else ""),
                 fontsize=10)
    ax.set_yscale("symlog", linthresh=0.1)
    from matplotlib.lines import Line2D
    shapes = [Line2D([], [], marker=_MARKERS[i % len(_MARKERS)], ls="", color="0.6", mec="k", label=s)
              for i, s in enumerate(kinds)]
    volts = [Line2D([], [], marker="s", ls="", color=c, label=f"{v:.3g} V") for v, c in colour.items()]
    front_line = [Line2D([], [], color="r", label="Pareto front")]
    ax.legend(handles=shapes + front_line + volts, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path)


def slack_heatmap(m, latency_budget: float, lowest: Sequence, implied, path: str,
                  paper: Tuple[float, float] = (0.5, 1e-5), floor: float = 1e-12, model: str = "event") -> None:
    """Slack (a :class:`pyvs.slack.SlackMap`): left, latency overhead with
    every erring bit protected against voltage, one curve per guard-band
    (log axis; overheads below ``floor`` drawn at it), the budget and the
    paper's point; right, the lowest voltage within the budget against the
    guard-band (a gap where no voltage of the grid meets it), and the
    guard-band the paper's point implies."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    for i, g in enumerate(m.guard_bands):  # one colour per guard-band, however close their values
        y = np.maximum(100 * np.asarray(m.overhead[i]), 100 * floor)
        ax.plot(m.voltages, y, color=plt.get_cmap("tab10")(i % 10), ls=_LINES[(i // 10) % len(_LINES)], lw=1.4,
                label=f"guard-band {g:g}")
    ax.axhline(100 * latency_budget, color="k", ls="--", lw=0.8, label=f"budget {100 * latency_budget:g} %")
    ax.plot([paper[0]], [100 * paper[1]], "r*", ms=12, label=f"paper: {paper[0]} V, {100 * paper[1]:g} %")
    ax.set_yscale("log")
    ax.set_ylim(bottom=100 * floor / 2)
    ax.set_xlabel("supply voltage (V)")
    ax.set_ylabel(f"latency overhead (%; below {100 * floor:g} % drawn at it)")
    ax.set_title(f"every erring bit Razor-protected; {model} timing model", fontsize=10)
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


def schedule_voltages(schedules: Dict[str, Dict[str, float]], kinds: Dict[str, str], title: str, path: str) -> None:
    """The supply of every layer (x: the layers in the model's order) for
    each named schedule (one panel each): a marker per layer, coloured by
    its kind, on the step line the array's supply follows (each step is a
    change of supply, which costs time and energy)."""
    names = list(kinds)
    order = list(dict.fromkeys(kinds.values()))
    colours = {k: plt.get_cmap("tab10")(i % 10) for i, k in enumerate(order)}
    fig, axes = plt.subplots(len(schedules), 1, figsize=(12, 1.0 + 2.2 * len(schedules)), dpi=110, sharex=True,
                             squeeze=False)
    all_v = [v for s in schedules.values() for v in s.values()]
    lo, hi = min(all_v), max(all_v)
    pad = max(0.0025, 0.15 * (hi - lo))
    for ax, (label, s) in zip(axes[:, 0], schedules.items()):
        x, v = np.arange(len(names)), [s[n] for n in names]
        ax.step(x, v, where="mid", color="0.6", lw=1, zorder=1)
        ax.scatter(x, v, c=[colours[kinds[n]] for n in names], s=22, zorder=2)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_ylabel("supply (V)")
        ax.set_title(label, fontsize=9, loc="left")
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xticks(np.arange(len(names)))
    axes[-1, 0].set_xticklabels(names, rotation=90, fontsize=6)
    axes[-1, 0].set_xlabel("layer, in the order the array runs them")
    handles = [plt.Line2D([], [], ls="none", marker="o", color=colours[k]) for k in order]
    axes[0, 0].legend(handles, order, fontsize=7, ncol=len(order), loc="lower right", bbox_to_anchor=(1.0, 1.02),
                      frameon=False)
    fig.suptitle(title, fontsize=10, x=0.02, ha="left")
    _save(fig, path)


def families_pareto(points: Dict[str, List[Tuple[float, float]]], chosen: Dict[str, Tuple[float, float]],
                    title: str, path: str) -> None:
    """Energy saving (x, %) against accuracy loss (y, points) of every
    evaluated point of each family (hollow markers), and each family's chosen
    point (filled, larger)."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for i, (family, xy) in enumerate(points.items()):
        st = _style(i, len(points))
        colour = plt.get_cmap("tab10")(i % 10)
        if xy:
            x, y = zip(*xy)
            ax.plot(np.array(x) * 100, np.array(y) * 100, ls="none", marker=st["marker"], mfc="none",
                    mec=colour, ms=6, label=f"{family}: evaluated")
        if family in chosen:
            cx, cy = chosen[family]
            ax.plot([cx * 100], [cy * 100], ls="none", marker=st["marker"], color=colour, ms=11, mec="black",
                    label=f"{family}: chosen")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_xlabel("energy saving vs. the nominal voltage (%)")
    ax.set_ylabel("accuracy loss: max of top-1 and agreement (points; log above 0.1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title, fontsize=9)
    _save(fig, path)
