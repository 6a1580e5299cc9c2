"""Several processes (``torchrun``): the process's rank, the process group, a sampler that resumes mid-epoch and a
stop decision that every rank shares."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DistributedSampler


@dataclass(frozen=True)
class ProcessPlace:
    """Where this process stands among the training processes (from torchrun's environment; one process without)."""

    rank: int
    """Global rank; rank 0 writes every file."""
    local_rank: int
    """Rank on this machine: the CUDA device index it takes."""
    world: int
    """Number of processes."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def process_place() -> ProcessPlace:
    """This process's :class:`ProcessPlace`, read from ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``."""
    return ProcessPlace(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")),
                        int(os.environ.get("WORLD_SIZE", "1")))


def start_process_group(place: ProcessPlace, device: torch.device) -> None:
    """Join the process group (NCCL on CUDA, gloo on the CPU) when there are several processes."""
    if place.world > 1:
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def end_process_group(place: ProcessPlace) -> None:
    if place.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def time_is_up(started: float, limit_min: float, world: int, device: torch.device) -> bool:
    """Whether the time limit is reached; with several processes rank 0 decides for all, so they stop together."""
    up = time.monotonic() - started > limit_min * 60
    if world > 1:
        import torch.distributed as dist

        flag = torch.tensor([1.0 if up else 0.0], device=device)
        dist.broadcast(flag, src=0)
        up = bool(flag.item() > 0)
    return up


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler that can start part-way into an epoch (``start_index``), for exact mid-epoch resume."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start_index = 0

    def __iter__(self):  # noqa: ANN204
        return iter(list(super().__iter__())[self.start_index:])

    def __len__(self) -> int:
        return self.num_samples - self.start_index
