"""The process group under torchrun / accelerate launch: rank, world size, barrier, broadcast.

Outside a launcher everything is a no-op for one process. The group is initialised here when the launcher set
WORLD_SIZE and nobody has yet (NCCL on CUDA, gloo on CPU); the Trainer (through accelerate) then reuses it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Group:
    rank: int
    world_size: int

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world_size == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


def process_group() -> Group:
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_initialized():
            if torch.cuda.is_available():
                # NCCL collectives (and broadcast_object_list's staging tensor) run on the current device: it must
                # be this rank's GPU, not cuda:0 for every rank
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return Group(dist.get_rank(), dist.get_world_size())
    return Group(0, 1)
