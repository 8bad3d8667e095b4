"""The training processes: the device of this one, and under ``torchrun`` (which sets RANK, WORLD_SIZE,
LOCAL_RANK) the process group that DDP averages gradients over. Each process trains on its shard of every
global batch; rank 0 validates, logs and writes checkpoints.

The process group exists only inside :meth:`Processes.group`, entered after every check of the run's
set-up has passed, and is destroyed however the block ends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from vsr.device import default_device
from vsr.errors import VSRError


@dataclass(frozen=True)
class Processes:
    """This process's place among the training processes, as ``torchrun`` states it in the environment."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Processes:
        world_size, local_rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
        if world_size <= 1:
            return cls(local_rank=local_rank)
        return cls(int(os.environ["RANK"]), world_size, local_rank)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @contextmanager
    def group(self, device: torch.device) -> Iterator[None]:
        """The process group (NCCL on CUDA, gloo on CPU) for the block, when several processes run and no
        group exists yet (one the caller made is left to the caller)."""
        owns = self.distributed and not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        try:
            yield
        finally:
            if owns and dist.is_initialized():
                dist.destroy_process_group()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` in DDP when several processes run (it sees only the parameters that require grad)."""
        if not self.distributed:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def mean(self, value: Tensor) -> Tensor:
        """The mean of ``value`` over the processes."""
        if self.distributed:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world_size
        return value

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def resolve_device(device: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """The device to train on: ``device``, else CUDA (this process's local GPU) when available, else CPU."""
    device = default_device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VSRError(f"device {device} was asked for but CUDA is not available; use device='cpu'")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def leave_without_teardown() -> None:
    """End a spawned DDP worker process, whose results are on disk, without Python's teardown.

    When DDP's reducer is freed it destroys the gloo process group (which outlives ``destroy_process_group``),
    and that destructor joins gloo's worker thread while holding the GIL; a worker thread still releasing a
    finished collective's tensors waits for the GIL: a deadlock under CPU load, or an abort at interpreter
    exit (SIGABRT, seen in CI). An upstream race; a worker that exits here never reaches it."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


__all__ = ["Processes", "leave_without_teardown", "resolve_device"]
