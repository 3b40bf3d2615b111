"""torch.distributed under torchrun, and nothing at all without it.

Under `torchrun --nproc-per-node N -m compute run RUN.toml` every rank takes a
length-balanced share of the examples; without torchrun (no WORLD_SIZE) the
same code runs as one process and every call here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

# Ranks wait at a barrier for the slowest one to finish its share; generation makes
# shares end minutes apart on long runs, well past the 10-minute nccl default.
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup() -> Ranks:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU); one process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return Ranks()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank), timeout=BARRIER_TIMEOUT)
        else:
            dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank)


def barrier(ranks: Ranks) -> None:
    if ranks.world_size > 1:
        dist.barrier()


def teardown(ranks: Ranks) -> None:
    if ranks.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def balanced_share(costs: dict[int, int], ranks: Ranks) -> list[int]:
    """This rank's keys: longest first, each to the rank with the least total cost so far."""
    totals = [0] * ranks.world_size
    mine = []
    for key in sorted(costs, key=lambda k: (-costs[k], k)):
        target = min(range(ranks.world_size), key=lambda r: (totals[r], r))
        totals[target] += costs[key]
        if target == ranks.rank:
            mine.append(key)
    return mine
