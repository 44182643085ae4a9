"""Process-group set-up and tear-down: the one place that talks to ``torch.distributed.init_process_group``.

The backend follows the device (NCCL on CUDA, gloo on CPU, as torch maps them); nothing
here names CUDA. Collectives get a timeout, and on NCCL ``TORCH_NCCL_BLOCKING_WAIT`` makes
a timed-out collective raise in the calling thread instead of leaving it hung (or letting
the watchdog kill a host process such as ComfyUI).
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ParallelError
from .options import launched_by_torchrun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits: global ``rank`` of ``world`` processes, computing on ``device``."""

    rank: int
    world: int
    device: torch.device


def backend_for(device: torch.device) -> str:
    """The collective backend torch pairs with this device type (nccl for cuda, gloo for cpu, ...)."""
    backend = dist.Backend.default_device_backend_map.get(device.type)
    if backend is None:
        known = ", ".join(sorted(dist.Backend.default_device_backend_map))
        raise ParallelError(f"No torch.distributed backend for device type {device.type!r}; use one of: {known}.")
    return backend


def timeout(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=float(seconds))


def new_group(ranks: list[int] | None, timeout_s: float, backend: str | None = None) -> dist.ProcessGroup | None:
    """``dist.new_group`` (collective: every rank calls it, in the same order): the group, or None on a
    rank outside ``ranks`` (None = all ranks)."""
    group = dist.new_group(ranks, timeout=timeout(timeout_s), backend=backend)
    return group if isinstance(group, dist.ProcessGroup) else None


def member_of(group: dist.ProcessGroup | None, what: str) -> dist.ProcessGroup:
    """``group``, which this rank must belong to (ParallelError when it does not: a broken layout)."""
    if group is None:
        raise ParallelError(f"This rank is not a member of {what}; every rank must build the groups alike.")
    return group


def world_group() -> dist.ProcessGroup:
    """The default group (ParallelError before :func:`init_group`)."""
    return member_of(dist.group.WORLD, "the default process group (torch.distributed is not initialised)")


def init_group(info: RankInfo, init_method: str | None, timeout_s: float) -> None:
    """Join the default process group (``init_method`` None: from the torchrun environment)."""
    if dist.is_initialized():
        raise ParallelError(
            "torch.distributed is already initialised in this process; one multi-GPU group at a time "
            "(unload the other multi-GPU model first)."
        )
    backend = backend_for(info.device)
    if backend == "nccl":
        os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
    if info.device.type != "cpu" and info.device.index is not None:
        getattr(torch, info.device.type).set_device(info.device)
    dist.init_process_group(
        backend, init_method=init_method, rank=info.rank, world_size=info.world, timeout=timeout(timeout_s)
    )
    log.info("rank %d/%d joined (%s on %s)", info.rank, info.world, backend, info.device)


def teardown() -> None:
    """Leave the default group; aborts it when a dead peer makes a clean destroy impossible."""
    if not dist.is_initialized():
        return
    try:
        dist.destroy_process_group()
    except (RuntimeError, ValueError) as exc:  # a broken communicator: abort instead
        log.warning("destroy_process_group failed (%s); aborting the group.", exc)
        abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
        if abort is not None:
            abort()


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when launched by torchrun with more than one process, else None."""
    if not launched_by_torchrun():
        return None
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))


def local_device(device_type: str, local_rank: int) -> torch.device:
    """This rank's device: ``<type>:<local rank>`` on accelerators, the CPU for gloo runs."""
    if device_type == "cpu":
        return torch.device("cpu")
    return torch.device(device_type, local_rank)
