"""How many captured operand pairs the event model's tables need (issue 22):
the MAC-weighted rates near the onset and the onset itself versus the
pairs captured per layer, on MobileNetV2's layers.

    python scripts/convergence.py --data ../shared/data \\
        --weights ../shared/data/mobilenet_v2_int8_qnnpack_state_dict.pth --out docs/convergence

One capture at the largest size serves every size: the reservoir keeps the
pairs with the smallest random keys, so its first S pairs per layer are the
capture at S (with the same candidates per image). Each layer's pairs are
split into doubling blocks and 4 interleaved folds and simulated once; a
size's histograms are the sum of its blocks. The estimate is the mean over
the pairs (per layer, then MAC-weighted); its standard error is the spread
of the 4 folds' estimates / 2, and the interval is +-1.96 of it (a normal
approximation that is too narrow where a fold sees almost no late pair).
"""
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pyvs import timing  # noqa: E402
from pyvs.dataflow import capture_pairs  # noqa: E402
from pyvs.hardware import ArrayConfig  # noqa: E402
from pyvs.timing.event import EventModel  # noqa: E402
from pyvs.timing.layers import mac_weighted  # noqa: E402
from studylib import finish, mobilenet, onset, parser  # noqa: E402

VOLTS = [round(0.48 + 0.001 * i, 3) for i in range(81)]   # 0.480 .. 0.560 V, 1 mV apart
SHOW = (0.515, 0.52, 0.525)
FOLDS = 4


def groups_of(pairs, sizes):
    """(layer, size index, fold) -> the pairs of that block and fold: block k
    holds positions sizes[k-1] .. sizes[k] - 1 of the layer's reservoir."""
    out = {}
    for name, p in pairs.items():
        lo = 0
        for k, hi in enumerate(sizes):
            hi = min(hi, len(p))
            for f in range(FOLDS):
                idx = np.arange(lo + f, hi, FOLDS)
                if len(idx):
                    out[(name, k, f)] = p.take(idx)
            lo = hi
    return out


def study(args) -> dict:
    model, images, macs = mobilenet(args)
    sizes = [4096 * 2 ** k for k in range(args.doublings + 1)]
    t0 = time.perf_counter()
    pairs = capture_pairs(model, images, samples=sizes[-1], per_image=args.per_image, progress=True)
    t_capture = time.perf_counter() - t0
    event, array = EventModel(32, timing.TechParams()), ArrayConfig()
    groups = groups_of(pairs, sizes)
    t0 = time.perf_counter()
    with tqdm(total=sum(len(p) for p in groups.values()), desc="simulating", unit="pair") as bar:
        hist = event.histograms_of(groups, done=bar.update)
    t_sim = time.perf_counter() - t0
    rows = []
    for k, size in enumerate(sizes):
        per_fold = []
        for f in range(FOLDS):
            tables = {}
            for name in pairs:
                parts = [hist[(name, j, f)] for j in range(k + 1) if (name, j, f) in hist]
                if parts:
                    h = parts[0]
                    for q in parts[1:]:
                        h = h + q
                    tables[name] = event.probabilities(h, VOLTS, array)[0]
            per_fold.append((tables, {n: sum(hist[(n, j, f)].n for j in range(k + 1) if (n, j, f) in hist)
                                      for n in tables}))
        # pooled over folds: each layer's histogram over all its pairs
        pooled = {}
        for name in pairs:
            hs = [hist[(name, j, f)] for j in range(k + 1) for f in range(FOLDS) if (name, j, f) in hist]
            h = hs[0]
            for q in hs[1:]:
                h = h + q
            pooled[name] = event.probabilities(h, VOLTS, array)[0]
        p = mac_weighted(pooled, macs)
        folds = np.stack([mac_weighted(t, macs) for t, _ in per_fold])
        se = folds.std(0, ddof=1) / np.sqrt(FOLDS)
        n_pairs = int(sum(min(size, len(q)) for q in pairs.values()))
        rows.append({"pairs_per_layer": size, "pairs": n_pairs, "onset": onset(p, VOLTS),
                     "p31": {str(v): float(p[VOLTS.index(v), 31]) for v in SHOW},
                     "p31_se": {str(v): float(se[VOLTS.index(v), 31]) for v in SHOW},
                     "top": [float(f"{x:.3g}") for x in p.max(1)]})
    return {"volts": VOLTS, "calibration_images": len(images), "per_image": args.per_image,
            "capture_s": t_capture, "simulate_s": t_sim, "rows": rows}


def print_table(doc) -> None:
    print(f"{doc['calibration_images']} images, {doc['per_image']} candidates per image and layer; "
          f"capture {doc['capture_s']:.0f} s, simulation {doc['simulate_s']:.0f} s (largest size)")
    print("| pairs per layer | pairs | " + " | ".join(f"P(bit 31) at {v} V (± 1.96 se)" for v in SHOW)
          + " | onset (1e-9) | moved |")
    print("| --- | --- |" + " --- |" * (len(SHOW) + 2))
    prev = None
    for r in doc["rows"]:
        cells = [f"{r['p31'][str(v)]:.2g} ± {1.96 * r['p31_se'][str(v)]:.1g}" for v in SHOW]
        moved = "" if prev is None else f"{1e3 * (r['onset'] - prev):+.0f} mV"
        print(f"| {r['pairs_per_layer']} | {r['pairs']:,} | " + " | ".join(cells) + f" | {r['onset']:.3f} V | {moved} |")
        prev = r["onset"]


def plot(doc, path: str) -> None:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    n = np.array([r["pairs"] for r in doc["rows"]])
    for i, v in enumerate(SHOW):
        p = np.array([r["p31"][str(v)] for r in doc["rows"]])
        se = np.array([r["p31_se"][str(v)] for r in doc["rows"]])
        ax.errorbar(n * (1 + 0.03 * (i - 1)), np.maximum(p, 1e-20), yerr=1.96 * se, fmt="o-", capsize=3,
                    label=f"{v} V")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1e-14, 1e-3)
    ax.set_xlabel("captured operand pairs (all layers; markers shifted by 3 % to stay apart)")
    ax.set_ylabel("P(bit 31 wrong) per MAC, MAC-weighted\n(bars: ±1.96 standard errors over 4 folds; "
                  "below 1e-14 not drawn)", fontsize=8)
    ax.set_title("rate near the onset versus pairs captured")
    ax.legend(fontsize=8)
    bx.plot(n, [r["onset"] for r in doc["rows"]], "o-")
    bx.set_xscale("log")
    bx.set_xlabel("captured operand pairs (all layers)")
    bx.set_ylabel("onset: highest V with a bit at P(wrong) >= 1e-9 (V, 1 mV grid)", fontsize=8)
    bx.set_title("onset versus pairs captured")
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


def main():
    ap = parser(__doc__, "convergence")
    ap.add_argument("--per-image", type=int, default=8192, help="candidates per image and layer")
    ap.add_argument("--doublings", type=int, default=6, help="sizes 4096 * 2^0 .. 2^k pairs per layer")
    args = ap.parse_args()
    finish(study(args), args.out, print_table, plot)


if __name__ == "__main__":
    main()
