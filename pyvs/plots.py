"""Figures (matplotlib, PNG). They read tables and result rows, never models."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

FLOOR = 1e-20  # probabilities below this are drawn as this


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
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
