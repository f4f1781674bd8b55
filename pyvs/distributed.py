"""Scale-out with torchrun (torch.distributed): who this process is, which
images it evaluates, and the few collectives an evaluation and a sweep need.

Launched by ``torchrun --nproc_per_node=N ...`` (one node or many), every
rank evaluates a contiguous block of the data set, by global image index:
rank r of R takes images [floor(n r / R), floor(n (r + 1) / R)). The timing
errors of an image depend on its global index only, so each image gets the
errors it gets in a one-process run, and the gathered predictions and the
summed counts are those of one process, bit for bit, for any world size.
Ranks use ``cuda:LOCAL_RANK`` with NCCL when there are GPUs, the CPU with
gloo otherwise. Without torchrun, :class:`World` is one process and every
collective is the identity.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, List, Tuple

import torch
import torch.distributed as dist

SHARD_RULE = "contiguous blocks by global image index: rank r of R takes [n*r//R, n*(r+1)//R)"


def _env_int(name: str, default, minimum: int) -> int:
    """An integer from the environment (torchrun's variables), checked."""
    text = os.environ.get(name, default)
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise ValueError(f"the environment variable {name}={text!r} is not an integer") from None
    if value < minimum:
        raise ValueError(f"the environment variable {name}={value} must be >= {minimum}")
    return value


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place in the job: rank, size, local rank (its GPU)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, device: str = "cpu") -> "World":
        """The world torchrun describes in the environment (RANK, WORLD_SIZE,
        LOCAL_RANK), with its process group started: NCCL for ``device``
        cuda, gloo for cpu. One process when there is no torchrun."""
        size = _env_int("WORLD_SIZE", "1", 1)
        if size <= 1:
            return cls()
        if "RANK" not in os.environ:
            raise ValueError(f"WORLD_SIZE is {size} but RANK is not set: launch with torchrun, or unset WORLD_SIZE")
        rank = _env_int("RANK", None, 0)
        if rank >= size:
            raise ValueError(f"RANK {rank} is not below WORLD_SIZE {size}: this process has no place in the job")
        world = cls(rank, size, _env_int("LOCAL_RANK", "0", 0))
        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(world.local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        return world

    def close(self) -> None:
        """Ends the process group (gloo's threads abort a process that exits
        with the group still up)."""
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and shows progress."""
        return self.rank == 0

    def device(self, device: str) -> str:
        """This rank's device: ``cuda:LOCAL_RANK`` for cuda, else ``device``."""
        return f"cuda:{self.local_rank}" if self.size > 1 and device.startswith("cuda") else device

    def shard(self, n: int) -> Tuple[int, int]:
        """[start, end) of the global image indices this rank evaluates."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def gather(self, obj: Any) -> List[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """fn() run on rank 0 only; its result, or its ValueError, on every rank."""
        result = error = None
        if self.is_main:
            try:
                result = fn()
            except ValueError as e:
                error = str(e)
        result, error = self.broadcast((result, error))
        if error is not None:
            raise ValueError(error)
        return result

    def check_same(self, what: str, obj: Any) -> None:
        """A ValueError on every rank unless every rank passed an equal ``obj``
        (the same arguments, the same data): mismatched ranks would compute
        different experiments and hang or mix them."""
        values = self.gather(obj)
        odd = [r for r, v in enumerate(values) if v != values[0]]
        if odd:
            raise ValueError(f"ranks {odd} have other {what} than rank 0; every rank must get the same")
