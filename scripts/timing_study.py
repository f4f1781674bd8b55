"""The timing models side by side on MobileNetV2's real operands (README,
"Timing model"): per-bit P(wrong) and P(late) of the event-driven model on
operand pairs captured from every layer (MAC-weighted) and on uniform
pairs, against the static model's P(late); the onset voltage of each layer
kind; the simulator's speed; and a figure.

    python scripts/timing_study.py --data ../shared/data \\
        --weights ../shared/data/mobilenet_v2_int8_qnnpack_state_dict.pth --out docs/timing_study
"""
import json
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pyvs import data, models, timing  # noqa: E402
from pyvs.costs import Workload  # noqa: E402
from pyvs.dataflow import calibration_images, capture_pairs, layer_timing  # noqa: E402
from pyvs.evaluate import evaluate  # noqa: E402
from pyvs.hardware import ArrayConfig  # noqa: E402
from pyvs.nn import convert  # noqa: E402
from pyvs.nn.layers import SystolicLinear, systolic_layers  # noqa: E402
from pyvs.timing.event import EventModel  # noqa: E402
from pyvs.timing.layers import mac_weighted  # noqa: E402
from pyvs.timing.operands import uniform_pairs  # noqa: E402
from studylib import ONSET, onset, parser  # noqa: E402

VOLTS = [round(0.40 + 0.005 * i, 3) for i in range(101)]  # 0.40 .. 0.90 V
SHOW = [0.50, 0.51, 0.52, 0.53, 0.55]
TOP_BITS = (31, 30, 29)


def toggles(pairs, macs, acc_bits: int = 32) -> dict:
    """What changes between a PE's two cycles, MAC-weighted over the layers:
    the weight, the activation, the product, and each of the top sum bits
    (the accumulator's output s = x + a*w mod 2^W): why one dataflow's top
    bits err more than another's."""
    mask = (1 << acc_bits) - 1
    total = sum(macs[n] for n in pairs)
    out = {"weight": 0.0, "activation": 0.0, "product": 0.0, **{f"sum_bit_{b}": 0.0 for b in TOP_BITS}}
    for name, p in pairs.items():
        share = macs[name] / total
        prev_s, s = (p.prev_x + p.prev_a * p.prev_w) & mask, (p.x + p.a * p.w) & mask
        out["weight"] += share * np.mean(p.prev_w != p.w)
        out["activation"] += share * np.mean(p.prev_a != p.a)
        out["product"] += share * np.mean(p.prev_a * p.prev_w != p.a * p.w)
        for b in TOP_BITS:
            out[f"sum_bit_{b}"] += share * np.mean(((prev_s ^ s) >> b) & 1)
    return {k: float(v) for k, v in out.items()}


def kind(layer, first: bool) -> str:
    """MobileNetV2's layer kinds, from the layer itself."""
    if isinstance(layer, SystolicLinear):
        return "classifier"
    if first:
        return "stem 3x3"
    if layer.groups > 1:
        return "depthwise 3x3"
    return "1x1 expand" if layer.out_channels > layer.in_channels else "1x1 project"


def main():
    ap = parser(__doc__, "timing_study")
    ap.add_argument("--pairs-per-layer", type=int, default=timing.TimingSpec().pairs_per_layer)
    ap.add_argument("--dataflow", default="ws", choices=["ws", "os"], help="the array's dataflow (default: ws)")
    args = ap.parse_args()

    model = convert(models.mobilenet_v2_int8(args.weights))
    ds = data.imagenet_dataset(args.data, args.calibration_images)
    batches = data.decoded(ds, 16, progress=False)
    images = calibration_images(batches, args.calibration_images)
    macs = Workload(evaluate(model, batches[:1], progress=False).shapes).macs_by_layer
    layers = dict(systolic_layers(model))
    kinds = {n: kind(layers[n], i == 0) for i, n in enumerate(macs)}

    spec = timing.TimingSpec.named("event", pairs_per_layer=args.pairs_per_layer)
    array = ArrayConfig()
    t0 = time.perf_counter()
    lt = layer_timing(model, images, spec, dataflow=args.dataflow)
    t_all = time.perf_counter() - t0
    n_pairs = sum(lt.provenance["pairs"].values())
    pairs = capture_pairs(model, images, samples=args.pairs_per_layer, per_image=spec.candidates_per_image,
                          seed=spec.options.seed, dataflow=args.dataflow)
    wrong, late = lt.tables(VOLTS, array), lt.tables(VOLTS, array, late=True)
    real_w, real_l = mac_weighted(wrong, macs), mac_weighted(late, macs)

    event = EventModel(32, spec.tech)
    t0 = time.perf_counter()
    h = event.histograms(uniform_pairs(1 << 17, 32, np.random.default_rng(0)))
    speed = (1 << 17) / (time.perf_counter() - t0) * 60
    uni_w, uni_l = event.probabilities(h, VOLTS, array)
    static = timing.error_probabilities(VOLTS, model="static").numpy()

    doc = {"volts": VOLTS, "dataflow": args.dataflow, "calibration_images": len(images), "pairs": n_pairs,
           "capture_and_simulate_s": t_all,
           "uniform_pairs_per_minute": speed, "kinds": kinds,
           "real_wrong": real_w.tolist(), "real_late": real_l.tolist(), "uniform_wrong": uni_w.tolist(),
           "uniform_late": uni_l.tolist(), "static_late": static.tolist(),
           "onset": {n: onset(wrong[n], VOLTS) for n in wrong}, "toggles": toggles(pairs, macs)}
    with open(args.out + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    _print(doc, macs)
    _plot(doc, wrong, macs, args.out + ".png")


def _print(doc, macs):
    v = doc["volts"]
    print(f"{doc['calibration_images']} calibration images, {doc['pairs']} pairs, captured and simulated in "
          f"{doc['capture_and_simulate_s']:.1f} s; uniform pairs simulated at {doc['uniform_pairs_per_minute']:.3g} per minute")
    for volts in SHOW:
        i = v.index(volts)
        print(f"\n{volts:.2f} V: | bit | real P(wrong) | real P(late) | uniform P(wrong) | uniform P(late) | static P(late) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for b in range(31, 19, -1):
            cells = [doc[k][i][b] for k in ("real_wrong", "real_late", "uniform_wrong", "uniform_late", "static_late")]
            print(f"| {b} | " + " | ".join(f"{c:.2g}" for c in cells) + " |")
    print(f"\nonset (highest voltage where a layer's most erring bit reaches P(wrong) >= {ONSET:g} per MAC):")
    by_kind = {}
    for n, k in doc["kinds"].items():
        by_kind.setdefault(k, []).append(doc["onset"].get(n, float("nan")))
    print("| layer kind | layers | onset, highest | median | lowest | share of MACs |")
    print("| --- | --- | --- | --- | --- | --- |")
    total = sum(macs.values())
    for k, on in by_kind.items():
        share = sum(macs[n] for n, kk in doc["kinds"].items() if kk == k) / total
        on = np.array(on)
        print(f"| {k} | {len(on)} | {np.nanmax(on):.3f} V | {np.nanmedian(on):.3f} V | {np.nanmin(on):.3f} V | "
              f"{100 * share:.1f} % |")
    print("\nwhat changes between a PE's two cycles (MAC-weighted): " +
          ", ".join(f"{k} {v:.3g}" for k, v in doc["toggles"].items()))
    for name in ("real_wrong", "uniform_wrong", "static_late"):
        print(f"model onset ({name}): {onset(np.array(doc[name]), v):.3f} V")


def _plot(doc, wrong, macs, path):
    v = np.array(doc["volts"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5), dpi=120)
    kinds = sorted(set(doc["kinds"].values()))
    for i, k in enumerate(kinds):
        names = [n for n, kk in doc["kinds"].items() if kk == k and n in wrong]
        top = np.stack([wrong[n].max(1) for n in names])          # [layers, V]
        ax.fill_between(v, np.maximum(top.min(0), 1e-20), np.maximum(top.max(0), 1e-20), alpha=0.2, color=f"C{i}")
        ax.plot(v, np.maximum(np.median(top, 0), 1e-20), color=f"C{i}", label=f"{k} ({len(names)} layers)")
    ax.plot(v, np.maximum(np.array(doc["uniform_wrong"]).max(1), 1e-20), "k--", label="event, uniform pairs")
    ax.plot(v, np.maximum(np.array(doc["static_late"]).max(1), 1e-20), "k:",
            label="static P(late), uniform operands (counted as wrong)")
    ax.set_yscale("log")
    ax.set_ylim(1e-18, 1)
    ax.set_xlim(0.40, 0.62)
    ax.set_xlabel("supply voltage (V)")
    ax.set_ylabel("error probability of the most erring bit, per MAC\n(event: P(wrong); static: P(late); "
                  "below 1e-18 not drawn)", fontsize=8)
    ax.set_title("event model per layer: median and range of each layer kind")
    ax.legend(fontsize=7)
    i = list(v).index(0.5)
    bits = np.arange(20, 32)
    for key, style, label in (("real_wrong", "o-", "event P(wrong), real pairs"),
                              ("real_late", "s--", "event P(late), real pairs"),
                              ("uniform_wrong", "^-", "event P(wrong), uniform pairs"),
                              ("static_late", "v:", "static P(late) = P(wrong), uniform")):
        bx.plot(bits, np.maximum(np.array(doc[key])[i, 20:], 1e-20), style, mfc="none", label=label)
    bx.set_yscale("log")
    bx.set_ylim(1e-18, 1)
    bx.set_xlabel("accumulator bit")
    bx.set_ylabel("P(wrong) or P(late), as the legend says, per MAC at 0.50 V, 0.7 GHz\n(below 1e-18 not drawn)",
                  fontsize=8)
    bx.set_title("per bit at 0.50 V (real: MAC-weighted over the layers)")
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
