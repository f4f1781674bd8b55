"""Where MobileNetV2's timing errors sit, by the MAC's own operands (issue 22,
per-MAC conditioned injection; docs/timing.md): per signature L (the run of
differing top adder inputs, pyvs.timing.signatures) the share of MACs and
P(some bit wrong), estimated on the even-numbered captured pairs of every
layer and checked on the odd-numbered ones, and the joint patterns of wrong
bits (one variation factor per MAC-cycle).

    python scripts/signature_study.py --data ../shared/data \\
        --weights ../shared/data/mobilenet_v2_int8_qnnpack_state_dict.pth --out docs/signatures

Layers are combined MAC-weighted, as the tables are. The interval of a
class's rate is +-1.96 standard errors of the mean over its pairs of each
pair's P(some bit wrong), per layer, combined MAC-weighted (a normal
approximation, too narrow where a class has few erring pairs).
"""
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pyvs.dataflow import capture_pairs  # noqa: E402
from pyvs.hardware import ArrayConfig  # noqa: E402
from pyvs.timing import TechParams  # noqa: E402
from pyvs.timing import signatures as S  # noqa: E402
from pyvs.timing.event import EventModel  # noqa: E402
from studylib import finish, mobilenet, parser  # noqa: E402

VOLTS = (0.51, 0.515, 0.52, 0.525)
W = 32
# Signature classes: L = 0 .. 14 (no run into the product's sign bits), 15, 16, then runs of 4.
BUCKETS = [(0, 14), (15, 15), (16, 16), (17, 20), (21, 24), (25, 28), (29, 32)]


def _rows(share, rate, var, average, patterns) -> list:
    """Per voltage: the classes' rates (rate[i, h, b] sums over layers the
    layer's weight x the class's share of it x its mean: divided by the
    class's share), their standard errors, and the patterns."""
    rows = []
    for i, v in enumerate(VOLTS):
        cls = []
        for b, (lo, hi) in enumerate(BUCKETS):
            est = [rate[i, h, b] / share[h, b] if share[h, b] > 0 else 0.0 for h in (0, 1)]
            se = [np.sqrt(var[i, h, b]) / share[h, b] if share[h, b] > 0 else 0.0 for h in (0, 1)]
            cls.append({"L": [lo, hi], "mac_share": float(share.mean(0)[b]), "rate_fit": float(est[0]),
                        "rate_check": float(est[1]), "se_fit": float(se[0]), "se_check": float(se[1]),
                        "error_share": float((rate[i, 0, b] + rate[i, 1, b]) / max(rate[i].sum(), 1e-300))})
        pats = sorted(patterns[i].items(), key=lambda kv: -kv[1])
        any_total = sum(patterns[i].values())
        rows.append({"v": v, "p_any": float(average[i]), "classes": cls,
                     "multi_bit_share": float(sum(q for m, q in pats if bin(m).count("1") > 1) / max(any_total, 1e-300)),
                     "patterns": [[hex(m), q / max(any_total, 1e-300)] for m, q in pats[:6]]})
    return rows


def study(args) -> dict:
    model_q, images, macs = mobilenet(args)
    t0 = time.perf_counter()
    pairs = capture_pairs(model_q, images, samples=args.pairs_per_layer,
                          per_image=-(-args.pairs_per_layer // (len(images) - 1)), progress=True)
    t_capture = time.perf_counter() - t0
    event = EventModel(W, TechParams())
    tcs = dict(zip(VOLTS, event.capture_times(VOLTS, ArrayConfig())))
    low = min(tcs.values())
    min_end = low - 12 * event.tech.sigma_gate * np.sqrt(low * event.d2)
    total = sum(macs[n] for n in pairs)
    # per voltage, half (0 even, 1 odd) and bucket: MAC-weighted share of MACs, rate, its variance
    share = np.zeros((2, len(BUCKETS)))
    rate = np.zeros((len(VOLTS), 2, len(BUCKETS)))
    var = np.zeros((len(VOLTS), 2, len(BUCKETS)))
    average = np.zeros(len(VOLTS))
    patterns = [dict() for _ in VOLTS]
    t0 = time.perf_counter()
    for name, p in pairs.items():
        weight = macs[name] / total
        iv = S.wrong_intervals(event, p, min_end)
        sig = S.signature(p.x, p.a, p.w, W)
        half = np.arange(len(p)) % 2
        bucket = np.digitize(sig, [hi + 1 for _, hi in BUCKETS[:-1]])
        for h in (0, 1):
            share[h] += weight * np.bincount(bucket[half == h], minlength=len(BUCKETS)) / max((half == h).sum(), 1)
        for i, v in enumerate(VOLTS):
            pair, mask, prob = S.pattern_probabilities(iv, tcs[v], event.tech.sigma_gate, event.d2)
            any_wrong = np.bincount(pair, weights=prob, minlength=len(p))  # P(some bit wrong) per pair
            average[i] += weight * any_wrong.mean()
            for h in (0, 1):
                for b in range(len(BUCKETS)):
                    sel = any_wrong[(half == h) & (bucket == b)]
                    if len(sel):
                        # the class's rate, weighted by its share of the layer's MACs in this half
                        frac = len(sel) / max((half == h).sum(), 1)
                        rate[i, h, b] += weight * frac * sel.mean()
                        var[i, h, b] += (weight * frac) ** 2 * sel.var() / len(sel)
            for m in np.unique(mask):
                patterns[i][int(m)] = patterns[i].get(int(m), 0.0) + weight * prob[mask == m].sum() / len(p)
    t_patterns = time.perf_counter() - t0
    rows = _rows(share, rate, var, average, patterns)
    return {"calibration_images": len(images), "pairs": int(sum(len(p) for p in pairs.values())),
            "capture_s": t_capture, "patterns_s": t_patterns, "buckets": BUCKETS, "rows": rows}


def print_table(doc) -> None:
    print(f"{doc['pairs']:,} captured pairs from {doc['calibration_images']} images; capture "
          f"{doc['capture_s']:.0f} s, simulation and patterns {doc['patterns_s']:.0f} s")
    for r in doc["rows"]:
        print(f"\n{r['v']} V: P(some bit wrong) per MAC {r['p_any']:.3g}; of the erring MACs, "
              f"{100 * r['multi_bit_share']:.1f} % have several wrong bits; patterns: "
              + ", ".join(f"{m} {100 * q:.1f} %" for m, q in r["patterns"][:4]))
        print("| L | MACs | share of errors | P(some bit wrong), even pairs | odd pairs (held apart) | x average |")
        print("| --- | --- | --- | --- | --- | --- |")
        for c in r["classes"]:
            lo, hi = c["L"]
            ratio = (c["rate_fit"] + c["rate_check"]) / 2 / r["p_any"] if r["p_any"] > 0 else 0.0
            print(f"| {lo if lo == hi else f'{lo}–{hi}'} | {100 * c['mac_share']:.1f} % | {100 * c['error_share']:.1f} % | "
                  f"{c['rate_fit']:.2g} ± {1.96 * c['se_fit']:.1g} | {c['rate_check']:.2g} ± "
                  f"{1.96 * c['se_check']:.1g} | {ratio:.2f} |")


def plot(doc, path: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    x = np.arange(len(doc["buckets"]))
    for i, r in enumerate(doc["rows"]):
        for h, (key, style) in enumerate((("rate_fit", "o-"), ("rate_check", "x--"))):
            y = np.array([c[key] for c in r["classes"]])
            se = np.array([c["se_fit" if h == 0 else "se_check"] for c in r["classes"]])
            lower = np.minimum(1.96 * se, 0.9 * y)  # a log axis has no 0: such bars stop at y / 10
            ax.errorbar(x + 0.06 * (2 * i + h - len(doc["rows"])), np.where(y > 0, y, np.nan),
                        yerr=[lower, 1.96 * se],
                        fmt=style, color=f"C{i}", capsize=2, ms=4,
                        label=f"{r['v']} V, {'even pairs (fit)' if h == 0 else 'odd pairs (held apart)'}")
        ax.axhline(r["p_any"], color=f"C{i}", lw=0.7, ls=":")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{lo}–{hi}" if lo != hi else f"{lo}" for lo, hi in doc["buckets"]])
    ax.set_xlabel("signature L: run of differing top adder inputs (x vs product), bits")
    ax.set_ylabel("P(some bit wrong) per MAC, ±1.96 se (dotted: average over all MACs;\n"
                  "bars whose interval reaches 0 stop at a tenth of the value)", fontsize=8)
    ax.set_title(f"MobileNetV2, {doc['pairs']:,} captured pairs: errors need long runs (zero rates not drawn)",
                 fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


def main():
    ap = parser(__doc__, "signatures")
    ap.add_argument("--pairs-per-layer", type=int, default=32768)
    args = ap.parse_args()
    finish(study(args), args.out, print_table, plot)


if __name__ == "__main__":
    main()
