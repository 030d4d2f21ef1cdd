"""Data-parallel training under ``torchrun``: process group from the environment, rank helpers.

Launch with ``torchrun --nproc_per_node=N tools/finetune.py ...``; there is no launcher of our
own. The backend is NCCL on CUDA and gloo on CPU. Without ``WORLD_SIZE`` > 1 in the environment
everything here reduces to single-process behaviour.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from pcclora.device import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # this context created the process group (and so destroys it)

    @property
    def enabled(self) -> bool:
        """More than one process (torchrun with nproc > 1)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0


def init_distributed(device_name: str) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment (if any)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    owns_group = False
    if world_size > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            owns_group = True
    return DistributedContext(
        rank=rank, world_size=world_size, local_rank=local_rank, device=device, owns_group=owns_group
    )


def shutdown_distributed(context: DistributedContext) -> None:
    """Destroy the process group if ``context`` created it."""
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(obj: Any, context: DistributedContext) -> list[Any]:
    """Every rank's ``obj`` in rank order (just ``[obj]`` without DDP)."""
    if not context.enabled:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def any_rank(flag: bool, context: DistributedContext) -> bool:
    """True on every rank when ``flag`` is true on any rank (keeps ranks in step on a stop)."""
    if not context.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def mean_over_ranks(values: list[float], context: DistributedContext) -> list[float]:
    """Element-wise mean of a list of floats over the ranks."""
    if not context.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return (tensor / context.world_size).tolist()


def barrier(context: DistributedContext) -> None:
    """Wait for every rank (nothing without DDP)."""
    if context.enabled:
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module, context: DistributedContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics), as DDP's own forward does.

    For computations that call the wrapped module's other methods than ``forward`` (DDP's
    forward broadcasts the buffers; other methods do not), so that every rank computes with the
    model rank 0 saves.
    """
    if not context.enabled:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)
