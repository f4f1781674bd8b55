"""A sweep of the tiny test network, as one rank of a torchrun job (or one
process without torchrun): `python dist_sweep.py OUT [N_IMAGES]`.

Test hooks, from the environment: PYVS_TEST_FAIL_RANK=r makes rank r fail
before its first collective; PYVS_TEST_MISMATCH=1 gives each rank another
seed list; each rank writes its pid to OUT.pid<rank> (for kill tests)."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_sweep import run_sweep  # noqa: E402
from tinynet import tiny  # noqa: E402

from pyvs.distributed import World  # noqa: E402


def main():
    out, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 29
    world = World.from_env("cpu")
    with open(f"{out}.pid{world.rank}", "w") as f:
        f.write(str(os.getpid()))
    if os.environ.get("PYVS_TEST_FAIL_RANK") == str(world.rank):
        raise RuntimeError(f"rank {world.rank} failed on purpose")
    _, _, q = tiny()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    start, end = world.shard(n)
    batches = [(images[i:min(i + 6, end)], labels[i:min(i + 6, end)]) for i in range(start, end, 6)]
    seeds = [0, 1] if not os.environ.get("PYVS_TEST_MISMATCH") else [world.rank]
    try:
        run_sweep(q, batches, out, [0.9, 0.8, 0.7], ["none", "msb8", "auto"], seeds=seeds, world=world,
                  first_image=start)
    finally:
        world.close()


if __name__ == "__main__":
    main()
