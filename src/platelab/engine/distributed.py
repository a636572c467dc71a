"""Process-group helpers for ``torchrun`` launches (DDP), and no-ops in a single process.

A run is distributed only when ``torchrun`` (``torch.distributed.run``) set ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in the environment; platelab never spawns processes
itself. Every helper here works unchanged in a plain single-process run.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from platelab.errors import PlatelabError


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes in the group (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """This process's rank on its machine, from ``LOCAL_RANK`` (0 when unset)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_primary() -> bool:
    """True on the process that logs and saves (rank 0)."""
    return rank() == 0


def init_distributed(device_type: str = "cpu") -> bool:
    """Join the process group described by ``torchrun``'s environment variables.

    Args:
        device_type: ``"cuda"`` uses NCCL and pins this process to GPU ``LOCAL_RANK``;
            anything else uses gloo.

    Returns:
        True when a group of more than one process was joined (or already existed);
        False for a single-process run, where nothing is initialised.

    Raises:
        PlatelabError: ``WORLD_SIZE`` > 1 but ``RANK`` is missing (not a torchrun launch).
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return False
    if "RANK" not in os.environ or "MASTER_ADDR" not in os.environ:
        raise PlatelabError("WORLD_SIZE is set but RANK/MASTER_ADDR are not: launch with torchrun")
    if device_type == "cuda":
        torch.cuda.set_device(local_rank())
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    return True


def cleanup() -> None:
    """Leave the process group, if one was joined.

    A barrier goes first: gloo's worker threads may still be releasing the tensors of
    the last collective, and if that happens during interpreter shutdown the process
    aborts ("terminate called without an active exception"; pytorch PR #179291). DDP
    keeps the group alive past ``destroy_process_group``, so its threads are not joined
    there; a barrier, whose work holds no Python tensors, makes that release happen first.
    """
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over ranks (a copy; ``value`` itself is left as it was)."""
    out = value.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= world_size()
    return out


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum of ``value`` over ranks (a copy)."""
    out = value.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_object(obj: object) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not is_distributed():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model
