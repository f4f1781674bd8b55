"""Put your own CNN on the simulated array and read where the timing errors
land, layer by layer.

    python examples/own_model.py

1. Any float CNN of Conv2d / Linear / BatchNorm / ReLU (here a small one) is
   converted to int8 systolic layers by post-training quantization on a few
   calibration batches (`pyvs.convert`).
2. The timing model gives per-bit error probabilities at a supply voltage
   (here the event-driven model on uniform operands: no data needed).
3. Every layer gets those probabilities (`pyvs.set_faults`), with the top
   accumulator bit protected by Razor.
4. A `pyvs.nn.Probe` collects the injected and corrected errors per layer
   while the model runs; `forward_pass(image_offset, probe)` also tells the
   layers which images of the data set a batch holds, so every image gets
   its own errors however the data is batched.
"""
import torch
from torch import nn

import pyvs
from pyvs.hardware import ArrayConfig
from pyvs.nn import FaultConfig, Probe, forward_pass
from pyvs.timing import TimingSpec


def my_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU(),  # depthwise
        nn.Conv2d(16, 32, 1), nn.ReLU(),                                          # pointwise
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()


def main(voltage: float = 0.46) -> dict:
    torch.manual_seed(0)
    images = torch.randn(64, 3, 32, 32)
    model = pyvs.convert(my_cnn(), [images[:16], images[16:32]])      # int8 systolic layers

    table = TimingSpec.named("event-uniform").table([voltage], ArrayConfig(), acc_bits=32)
    p = table.rates(voltage)                                            # float64 [32], LSB first
    pyvs.set_faults(model, FaultConfig(p, protect=1 << 31, seed=1))     # Razor on bit 31

    probe = Probe()
    with torch.no_grad():
        for start in range(0, len(images), 16):
            with forward_pass(start, probe):                             # images start .. start + 15
                model(images[start:start + 16])
    counts = probe.counts()                                              # layer -> int64 [2, 32]
    print(f"{voltage} V, bit 31 protected; per layer: injected / corrected errors over {len(images)} images")
    for name, c in counts.items():
        print(f"  {name:<6} {int(c[0].sum()):>8} {int(c[1].sum()):>10}")
    return counts


if __name__ == "__main__":
    main()
