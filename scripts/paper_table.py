"""The README's "Results" table from a sweep folder: for each voltage, top-1
with no / auto / all protection, golden agreement, auto's protected bits,
latency overhead and energy saving, beside the paper's headline numbers.

    python scripts/paper_table.py results/sample200 [--array-batch 200]
"""
import argparse

from pyvs.latency import ArrayConfig
from pyvs.sweep import load_results, rescore


def bits(mask_hex: str) -> str:
    m = int(mask_hex, 16)
    b = [i for i in range(32) if m >> i & 1]
    if not b:
        return "none"
    return f"{b[0]}-{b[-1]}" if b == list(range(b[0], b[-1] + 1)) else ",".join(map(str, b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--array-batch", type=int, default=1, help="images per weight load (default: 1)")
    args = ap.parse_args()
    rows, _, meta = load_results(args.results)
    if args.array_batch != 1:
        rows = rescore(args.results, ArrayConfig(batch=args.array_batch))
    by = {(r["voltage"], r["strategy"]): r for r in rows if r["seed"] == 0}
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
        pct = lambda r, k: f"{100 * r[k]:.1f}"  # noqa: E731
        print(f"| {v:.2f} | {pct(n, 'top1')} | {pct(a, 'top1')} | {pct(al, 'top1')} | {pct(a, 'agree')} | "
              f"{bits(a['protect'])} | {a['corrected_per_image']:.3g} | {100 * a['latency_overhead']:.3g} % | "
              f"{pct(n, 'energy_saving')} / {pct(a, 'energy_saving')} / {pct(al, 'energy_saving')} % |")


if __name__ == "__main__":
    main()
