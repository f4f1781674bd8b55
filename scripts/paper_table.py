"""The README's "Results" tables from sweep folders: for each voltage, top-1
with no / auto / all protection, golden agreement, auto's protected bits,
replays, latency overhead (errors of one cycle sharing a stall, and one
stall per error) and energy saving, beside the paper's headline numbers.
Latency and energy are recomputed (pyvs.sweep.rescore) with the folder's own
array and energy parameters; fields a folder predates (e.g. the dataflow and
the data-movement energy, added 2026-11) take today's defaults, so older
folders read in today's models. Given several folders (e.g. two timing models on the same images), one
table puts their 'none' and 'auto' points side by side.

    python scripts/paper_table.py results/event1000 [--array-batch 200]
    python scripts/paper_table.py results/event300 results/static300
"""
import argparse

from pyvs.accumulator import describe_mask
from pyvs.energy import EnergyParams
from pyvs.hardware import ArrayConfig
from pyvs.results import load_results
from pyvs.sweep import rescore

PAPER = "| **paper**, 0.9 → 0.5 V (ImageNet val) |"


def _points(folder, array_batch):
    _, _, meta = load_results(folder)
    array = ArrayConfig(**{**meta["array"], "batch": array_batch})
    rows = rescore(folder, array, EnergyParams(**meta["energy"]))
    return {(r.voltage, r.strategy): r for r in rows if r.seed == 0}, meta


def _model(meta):
    """The folder's timing model (folders of pyvs before 2026-12 name it 'timing_model')."""
    return meta.get("timing", {}).get("model") or meta.get("timing_model", "static-uniform")


def _pct(x):
    return f"{100 * x:.3g} %"


def one(by, meta):
    print(f"{meta['n_images']} images; fault-free top-1 {100 * meta['clean']['top1']:.1f} %; "
          f"timing model {_model(meta)}")
    print("| V | top-1 none | top-1 auto | top-1 all | agreement (auto) | auto protects | "
          "replays / image (auto) | latency overhead (auto; one stall per error) | "
          "energy saving (none / auto / all) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for v in sorted({v for v, _ in by}, reverse=True):
        n, a, al = by.get((v, "none")), by.get((v, "auto")), by.get((v, "all"))
        if not (n and a and al):
            continue
        print(f"| {v:.3g} | {100 * n.accuracy.top1:.1f} | {100 * a.accuracy.top1:.1f} | {100 * al.accuracy.top1:.1f} | "
              f"{100 * a.accuracy.agree:.1f} | {describe_mask(a.mask)} | {a.counts.corrected_per_image:.3g} | "
              f"{_pct(a.costs.latency_overhead)} ({_pct(a.costs.latency_overhead_bound)}) | "
              f"{100 * n.costs.energy_saving:.1f} / {100 * a.costs.energy_saving:.1f} / "
              f"{100 * al.costs.energy_saving:.1f} % |")
    print(PAPER + " | 0.29 points below clean | | | selected bits | | 0.001 % | 79.4 % |")


def side_by_side(folders, points):
    names = [_model(points[f][1]) for f in folders]
    print(" / ".join(f"{f}: {points[f][1]['n_images']} images, {n}" for f, n in zip(folders, names)))
    head = " | ".join(f"{n}: top-1 none | {n}: auto protects | {n}: latency (auto) | {n}: saving (auto)"
                      for n in names)
    print(f"| V | {head} |")
    print("| --- |" + " --- |" * 4 * len(names))
    volts = sorted({v for f in folders for v, _ in points[f][0]}, reverse=True)
    for v in volts:
        cells = []
        for f in folders:
            by = points[f][0]
            n, a = by.get((v, "none")), by.get((v, "auto"))
            cells += ([f"{100 * n.accuracy.top1:.1f}", describe_mask(a.mask), _pct(a.costs.latency_overhead),
                       f"{100 * a.costs.energy_saving:.1f} %"] if n and a else ["", "", "", ""])
        print(f"| {v:.3g} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="sweep folders")
    ap.add_argument("--array-batch", type=int, default=1, help="images per weight load (default: 1)")
    args = ap.parse_args()
    points = {f: _points(f, args.array_batch) for f in args.results}
    if len(args.results) == 1:
        one(*points[args.results[0]])
    else:
        side_by_side(args.results, points)


if __name__ == "__main__":
    main()
