"""The weight-stationary and output-stationary arrays side by side (README
and docs/dataflows.md): from each dataflow's timing study
(scripts/timing_study.py --dataflow ws|os) the onset voltage per layer kind,
the top bits' per-MAC error rates and what changes between a PE's two
cycles; from each dataflow's sweep folder, per voltage, the errors per image
and the bits they hit, auto's protected bits, latency, energy saving and
top-1, and the lowest voltage within the budget.

    python scripts/timing_study.py ... --dataflow ws --out results/study_ws
    python scripts/timing_study.py ... --dataflow os --out results/study_os
    pyvs sweep ... --dataflow ws --voltages 0.9,0.525,0.52,0.515,0.51 --out results/ws
    pyvs sweep ... --dataflow os --voltages 0.9,0.525,0.52,0.515,0.51 --out results/os
    python scripts/dataflow_table.py --studies results/study_ws.json results/study_os.json \\
        --sweeps results/ws results/os
"""
import argparse
import json

import numpy as np

from pyvs.accumulator import describe_mask
from pyvs.report import verdict
from pyvs.results import load_results
from pyvs.strategies import Budget

SHOW_VOLTS = (0.525, 0.52, 0.515, 0.51)


def _bits(per_bit) -> str:
    hit = [b for b, n in enumerate(per_bit) if n]
    return describe_mask(sum(1 << b for b in hit)) if hit else "none"


def studies(ws: dict, os_: dict) -> None:
    print("onset (highest V where a layer's most erring bit reaches 1e-9 per MAC), highest / median / lowest:")
    print("| layer kind | layers | ws | os |")
    print("| --- | --- | --- | --- |")
    for kind in dict.fromkeys(ws["kinds"].values()):
        cells = []
        for doc in (ws, os_):
            on = np.array([doc["onset"][n] for n, k in doc["kinds"].items() if k == kind], dtype=float)
            cells.append(f"{np.nanmax(on):.3f} / {np.nanmedian(on):.3f} / {np.nanmin(on):.3f} V")
        n = sum(1 for k in ws["kinds"].values() if k == kind)
        print(f"| {kind} | {n} | " + " | ".join(cells) + " |")
    print("\nper-MAC P(wrong), MAC-weighted over the layers, ws / os:")
    print("| V | " + " | ".join(f"bit {b}" for b in (31, 30, 29)) + " |")
    print("| --- | --- | --- | --- |")
    for v in (0.525, 0.52, 0.515, 0.51, 0.5):
        i = ws["volts"].index(v)
        print(f"| {v:.3f} | " + " | ".join(f"{ws['real_wrong'][i][b]:.2g} / {os_['real_wrong'][i][b]:.2g}"
                                           for b in (31, 30, 29)) + " |")
    print("\nwhat changes between a PE's two cycles (share of MACs), ws / os:")
    print("| | " + " | ".join(ws["toggles"]) + " |")
    print("| --- |" + " --- |" * len(ws["toggles"]))
    print("| ws / os | " + " | ".join(f"{ws['toggles'][k]:.3g} / {os_['toggles'][k]:.3g}" for k in ws["toggles"])
          + " |")


def sweeps(folders, budgets) -> None:
    loaded = [load_results(f) for f in folders]
    names = [m.get("array", {}).get("dataflow", "ws") for _, _, m in loaded]
    for (rows, _, meta), name in zip(loaded, names):
        base = meta["baseline_energy"]
        print(f"{name}: {meta['n_images']} images, fault-free top-1 {100 * meta['clean']['top1']:.1f} %, "
              f"{meta['base_cycles_per_image'] / 1e3:.0f} k cycles per image, {100 * meta['utilization']:.2g} % busy, "
              f"baseline {1e6 * base['total_j']:.0f} uJ per image (dynamic {1e6 * base['dynamic_j']:.0f}, "
              f"movement {1e6 * base.get('movement_j', 0):.0f}, leakage {1e6 * base['leakage_j']:.0f})")
    print("\n| V | dataflow | errors / image | bits hit | top-1 none | auto protects | top-1 auto | "
          "latency (auto) | energy saving (auto) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for v in SHOW_VOLTS:
        for (rows, _, _), name in zip(loaded, names):
            by = {r.strategy: r for r in rows if abs(r.voltage - v) < 1e-9 and r.seed == 0}
            n, a = by.get("none"), by.get("auto")
            if not (n and a):
                continue
            print(f"| {v:.3f} | {name} | {n.counts.injected_per_image:.3g} | {_bits(n.counts.injected_per_bit)} | "
                  f"{100 * n.accuracy.top1:.1f} | {describe_mask(a.mask)} | {100 * a.accuracy.top1:.1f} | "
                  f"{100 * a.costs.latency_overhead:.3g} % | {100 * a.costs.energy_saving:.1f} % |")
    print()
    for budget in budgets:
        for (rows, _, _), name in zip(loaded, names):
            best = verdict(rows, budget)
            print(f"{name}: lowest voltage within {100 * budget.accuracy:g} points and {100 * budget.latency:g} % "
                  "latency: " + (f"{best.voltage:.3f} V, {best.strategy} (protects {describe_mask(best.mask)}), "
                                 f"{100 * best.costs.energy_saving:.1f} % less energy, "
                                 f"{100 * best.costs.latency_overhead:.3g} % latency" if best else "none"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", nargs=2, metavar=("WS_JSON", "OS_JSON"), required=True,
                    help="timing_study.py outputs for ws and os")
    ap.add_argument("--sweeps", nargs="+", required=True, help="sweep folders (one per dataflow)")
    ap.add_argument("--latency-budgets", default="0.001,1", help="per cents (default: 0.001,1)")
    ap.add_argument("--budget", type=float, default=0.3, help="points of top-1 and agreement (default: 0.3)")
    args = ap.parse_args()
    docs = [json.load(open(p)) for p in args.studies]
    if [d.get("dataflow", "ws") for d in docs] != ["ws", "os"]:
        ap.error("--studies takes the ws study first, then the os study")
    if any("toggles" not in d for d in docs):
        ap.error("the studies predate the toggle statistics: rerun scripts/timing_study.py")
    studies(*docs)
    print()
    sweeps(args.sweeps, [Budget(accuracy=args.budget / 100, latency=float(x) / 100)
                         for x in args.latency_budgets.split(",")])


if __name__ == "__main__":
    main()
