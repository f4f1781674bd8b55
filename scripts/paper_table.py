"""The README's "Results" table from a sweep folder: for each voltage, top-1
with no / auto / all protection, golden agreement, auto's protected bits,
latency overhead and energy saving, beside the paper's headline numbers.

    python scripts/paper_table.py results/sample200 [--array-batch 200]
"""
import argparse

from pyvs.accumulator import describe_mask
from pyvs.latency import ArrayConfig
from pyvs.results import load_results
from pyvs.sweep import rescore


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--array-batch", type=int, default=1, help="images per weight load (default: 1)")
    args = ap.parse_args()
    rows, _, meta = load_results(args.results)
    if args.array_batch != 1:
        rows = rescore(args.results, ArrayConfig(batch=args.array_batch))
    by = {(r.voltage, r.strategy): r for r in rows if r.seed == 0}
    volts = sorted({v for v, _ in by}, reverse=True)
    print(f"{meta['n_images']} images; fault-free top-1 {100 * meta['clean']['top1']:.1f} %; "
          f"array batch {args.array_batch}")
    print("| V | top-1 none | top-1 auto | top-1 all | agreement (auto) | auto protects | "
          "replays / image (auto) | latency overhead (auto) | energy saving (none / auto / all) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for v in volts:
        n, a, al = by.get((v, "none")), by.get((v, "auto")), by.get((v, "all"))
        if not (n and a and al):
            continue
        print(f"| {v:.2f} | {100 * n.top1:.1f} | {100 * a.top1:.1f} | {100 * al.top1:.1f} | "
              f"{100 * a.agree:.1f} | {describe_mask(a.mask)} | {a.corrected_per_image:.3g} | "
              f"{100 * a.latency_overhead:.3g} % | {100 * n.energy_saving:.1f} / {100 * a.energy_saving:.1f} / "
              f"{100 * al.energy_saving:.1f} % |")


if __name__ == "__main__":
    main()
