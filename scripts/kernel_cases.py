"""Runs the op's CUDA kernels once each on representative cases, for a
kernel profiler to look at (Nsight Compute):

    ncu --clock-control none --kernel-name regex:"patch_kernel|simple_kernel" \\
        --section SpeedOfLight --section Occupancy --section WarpStateStats \\
        python scripts/kernel_cases.py

Cases (rates from the static-uniform table): the patch kernel on a 4096^3
GEMM at 0.53 V with bits 29-31 protected, and the simple kernel on
MobileNetV2's first depthwise conv at batch 256 (channels-last taps).
Each runs twice; profile the second launch of each (--launch-skip 1
--launch-count 1 per kernel name) to leave warm-up effects out.
"""
from __future__ import annotations

import torch

import pyvs
from pyvs import timing


def main():
    gen = torch.Generator().manual_seed(0)
    p = timing.error_probabilities([0.53], model="static")[0]
    big = 4096
    a = torch.randint(-128, 128, (big, big), generator=gen, dtype=torch.int16).to(torch.int8).cuda()
    w = torch.randint(-128, 128, (big, big), generator=gen, dtype=torch.int16).to(torch.int8).cuda().t()
    for _ in range(2):
        pyvs.systolic_matmul(a, w, p, protect=0xE0000000, seed=1, impl="fast")
    # features.1.conv.0.0 at batch 256: 32 channels, 256 * 112 * 112 rows, 9 taps
    C, M = 32, 256 * 112 * 112
    taps = torch.randint(0, 256, (9, M, C), generator=gen, dtype=torch.int16).to(torch.uint8).cuda()
    wd = torch.randint(-128, 128, (C, 9, 1), generator=gen, dtype=torch.int16).to(torch.int8).cuda()
    for _ in range(2):
        pyvs.systolic_matmul(taps.permute(2, 1, 0), wd, p, protect=0xE0000000, seed=1, impl="simple")
    torch.cuda.synchronize()
    print("kernel cases done")


if __name__ == "__main__":
    main()
