"""The circuit choices side by side (README, "Circuit choices"; docs/timing.md):
the accumulator's adder (ripple-carry, Kogge-Stone, Brent-Kung) and the
die's process corner (slow, typical, fast), each with the event-driven
model on MobileNetV2's captured operand pairs (or uniform pairs without
--data). Per adder and corner: where errors begin, how many bits err just
below that, and the per-bit rates behind a figure.

    python scripts/circuit_table.py --data ../shared/data \\
        --weights ../shared/data/mobilenet_v2_int8_qnnpack_state_dict.pth --out docs/circuits

Every adder runs on the same clock and gates (the clock is designed for the
ripple-carry MAC with the guard-band); "equal margin" instead gives each
adder the guard-band's margin over its own longest path, i.e. a clock that
is faster by the ratio of the paths.
"""
import dataclasses
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pyvs import timing  # noqa: E402
from pyvs.accumulator import describe_mask  # noqa: E402
from pyvs.dataflow import layer_timing  # noqa: E402
from pyvs.hardware import ArrayConfig  # noqa: E402
from pyvs.timing.datapath import ADDERS, DEFAULT_ADDER, worst_case_path  # noqa: E402
from pyvs.timing.event import EventModel  # noqa: E402
from pyvs.timing.layers import LayerTiming, mac_weighted  # noqa: E402
from pyvs.timing.operands import uniform_pairs  # noqa: E402
from pyvs.timing.params import CORNERS  # noqa: E402
from studylib import ONSET, finish, mobilenet, onset, parser  # noqa: E402

VOLTS = [round(0.37 + 0.001 * i, 3) for i in range(331)]  # 0.370 .. 0.700 V, 1 mV apart
BELOW = 0.010         # V below the onset where the erring bits are counted


def bits_at(p: np.ndarray, volts: float) -> list:
    """The bits with P(wrong) >= ONSET at ``volts``."""
    if round(volts, 3) not in VOLTS:
        return []
    i = VOLTS.index(round(volts, 3))
    return [b for b in range(p.shape[1]) if p[i, b] >= ONSET]


def workload(args):
    """(model, calibration images, MACs per layer) of MobileNetV2 with --data."""
    if not args.data:
        return None, None, {"uniform": 1}
    return mobilenet(args)


def histograms(args, adder: str, tech, model, images) -> LayerTiming:
    """The adder's histograms: MobileNetV2's captured pairs with --data, else
    one 'layer' of uniform pairs."""
    if model is not None:
        spec = timing.TimingSpec.named("event", pairs_per_layer=args.pairs_per_layer, adder=adder)
        return layer_timing(model, images, spec)
    event = EventModel(32, tech, adder)
    pairs = uniform_pairs(args.uniform_pairs, 32, np.random.default_rng(0))
    return LayerTiming(event, {"uniform": event.histograms(pairs)})


def study(args) -> dict:
    array, tech = ArrayConfig(), timing.TechParams()
    ref_path = worst_case_path(EventModel(32, tech, DEFAULT_ADDER).mac, tech)
    out = {"volts": VOLTS, "onset_threshold": ONSET, "data": bool(args.data), "adders": {}}
    model, images, macs = workload(args)
    for adder in ADDERS:
        t0 = time.perf_counter()
        lt = histograms(args, adder, tech, model, images)
        mac = lt.model.mac
        path = worst_case_path(mac, tech)
        entry = {"adder_gates": len(mac.net.gates) - mac.n_multiplier_gates, "path": path,
                 "simulate_s": time.perf_counter() - t0, "pairs": int(sum(h.n for h in lt.histograms.values())),
                 "corners": {}}
        for corner in CORNERS:
            die = LayerTiming(EventModel(32, dataclasses.replace(tech, corner=corner), adder), lt.histograms)
            tables = die.tables(VOLTS, array)
            p = mac_weighted(tables, macs)
            on = onset(p, VOLTS)
            below = on - BELOW
            entry["corners"][corner] = {
                "onset": on, "worst_layer_onset": max(onset(t, VOLTS) for t in tables.values()),
                "bits_below": bits_at(p, below) if on == on else [],
                "top": [float(f"{x:.3g}") for x in p.max(1)],            # most erring bit, per V
                "p_below": ([float(f"{x:.3g}") for x in p[VOLTS.index(round(below, 3))]]
                            if round(below, 3) in VOLTS else None)}  # per bit, 10 mV below the onset
        # the guard-band over the adder's own longest path: the period is
        # (1 + gb) * path, which clock_period writes as (1 + gb') * ref_path
        equal = (1 + tech.guard_band) * path / ref_path - 1
        entry["equal_margin"] = {"guard_band": equal, "onset": onset(mac_weighted(lt.tables(VOLTS, array, equal),
                                                                                  macs), VOLTS)}
        out["adders"][adder] = entry
        print(f"{adder}: {entry['pairs']} pairs simulated in {entry['simulate_s']:.0f} s", flush=True)
    return out


def _bits(bits) -> str:
    return f"{len(bits)}: {describe_mask(sum(1 << b for b in bits))}" if bits else "0"


def print_table(doc) -> None:
    ref = doc["adders"][DEFAULT_ADDER]["path"]
    print(f"\nonset: highest V where the {'MAC-weighted ' if doc['data'] else ''}most erring bit reaches "
          f"P(wrong) >= {doc['onset_threshold']:g} per MAC (1 mV grid); bits: erring at onset - {1e3 * BELOW:.0f} mV")
    print("| adder | adder gates | longest path (gate delays) | corner | onset | worst layer's onset | bits erring "
          "10 mV below | onset at equal margin |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for adder, e in doc["adders"].items():
        for corner, c in e["corners"].items():
            eq = (f"{e['equal_margin']['onset']:.3f} V (clock x{ref / e['path']:.2f})"
                  if corner == "typical" else "")
            print(f"| {adder} | {e['adder_gates']} | {e['path']:g} | {corner} | {c['onset']:.3f} V | "
                  f"{c['worst_layer_onset']:.3f} V | {_bits(c['bits_below'])} | {eq} |")


def plot(doc, path: str) -> None:
    v = np.array(doc["volts"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5), dpi=120)
    styles = {"slow": ":", "typical": "-", "fast": "--"}
    for i, (adder, e) in enumerate(doc["adders"].items()):
        for corner, c in e["corners"].items():
            ax.plot(v, np.maximum(c["top"], 1e-20), styles[corner], color=f"C{i}", label=f"{adder}, {corner}")
        typical = e["corners"]["typical"]
        p = np.array(typical["p_below"])
        bx.plot(np.arange(len(p)), np.maximum(p, 1e-20), "o-", color=f"C{i}", mfc="none",
                label=f"{adder} at {typical['onset'] - BELOW:.3f} V (its onset - {1e3 * BELOW:.0f} mV)")
    ax.axhline(doc["onset_threshold"], color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(1e-18, 1)
    ax.set_xlabel("supply voltage (V)")
    ax.set_ylabel("P(wrong) of the most erring accumulator bit, per MAC\n(below 1e-18 not drawn; grey: the onset "
                  "threshold)", fontsize=8)
    ax.set_title("adders (colour) and process corners (line style), 0.7 GHz")
    ax.legend(fontsize=7, ncol=1)
    bx.axhline(doc["onset_threshold"], color="grey", lw=0.8)
    bx.set_yscale("log")
    bx.set_ylim(1e-18, 1)
    bx.set_xlabel("accumulator bit")
    bx.set_ylabel("P(wrong) per MAC, typical corner (below 1e-18 not drawn)", fontsize=8)
    bx.set_title("which bits err, 10 mV below each adder's onset")
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


def main():
    ap = parser(__doc__, "circuits", data_required=False,
                data_help="ImageNet sample folder (default: uniform operand pairs)")
    ap.add_argument("--pairs-per-layer", type=int, default=4096)
    ap.add_argument("--uniform-pairs", type=int, default=1 << 17, help="without --data (default: %(default)s)")
    args = ap.parse_args()
    finish(study(args), args.out, print_table, plot)


if __name__ == "__main__":
    main()
