"""Speed of the CPU kernel against the pure-PyTorch reference, on one GEMM.

Both run in this process on the same inputs and the same events (the script
checks that their results are identical), so the ratio is measured, not
assumed. Prints one table; pass --append to add it, with machine, date and
commit, to benchmarks/RESULTS.md.

    python scripts/bench_reference.py              # 512 x 1152 x 256
    python scripts/bench_reference.py --m 64 --k 288 --n 32
"""
import argparse
import time

import torch

import benchlib
import pyvs
from pyvs import reference


def timed(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=int, default=512)
    ap.add_argument("--k", type=int, default=1152)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3, help="best of N for the kernel (default: 3)")
    ap.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args()

    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (args.m, args.k), generator=gen, dtype=torch.int16).to(torch.uint8)
    w = torch.randint(-128, 128, (args.k, args.n), generator=gen, dtype=torch.int16).to(torch.int8)
    rows = [f"| {'p per bit per MAC':<18} | {'kernel (s)':>10} | {'reference (s)':>13} | {'ratio':>8} | {'events':>8} |",
            f"|{'-' * 20}|{'-' * 11}:|{'-' * 14}:|{'-' * 9}:|{'-' * 9}:|"]
    for p in (0.0, 1e-6, 1e-4):
        probs = torch.full((32,), p, dtype=torch.float64)
        t_k, (out, stats) = timed(lambda: pyvs.systolic_matmul(a, w, probs, seed=1, protect=0xFF000000), args.repeat)
        t_r, (rout, rstats) = timed(lambda: reference.systolic_matmul(a, w, probs, seed=1, protect=0xFF000000), 1)
        assert torch.equal(out, rout) and torch.equal(stats, rstats), "kernel and reference disagree"
        rows.append(f"| {p:<18g} | {t_k:>10.4f} | {t_r:>13.2f} | {t_r / t_k:>7.0f}x | {int(stats.sum()):>8} |")
    notes = (f"{args.m}x{args.k}x{args.n} uint8 x int8, W=32, rows=256, bits 24-31 protected; "
             "kernel = best of --repeat runs, reference = one run; both give identical results.")
    benchlib.report(benchlib.title("scripts/bench_reference.py (CPU op vs reference)", "cpu"), notes,
                    rows, args.append)


if __name__ == "__main__":
    main()
