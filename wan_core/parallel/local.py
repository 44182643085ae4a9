"""Start N ranks on this machine with torch.multiprocessing (what torchrun does, from Python).

Used by the tests and the benchmark: ``spawn_local(fn, 2, "cuda", args)`` runs
``fn(info, *args)`` in two fresh processes joined in one process group (rank i on
``cuda:i``; all on the CPU with gloo for ``"cpu"``) and re-raises a rank's failure.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from torch.multiprocessing.spawn import spawn

from .distributed import RankInfo, init_group, local_device, teardown


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for the rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _entry(rank: int, fn: Callable, world: int, device_type: str, port: int, timeout_s: float, args: tuple) -> None:
    info = RankInfo(rank, world, local_device(device_type, rank))
    init_group(info, f"tcp://127.0.0.1:{port}", timeout_s)
    try:
        fn(info, *args)
    finally:
        teardown()


def spawn_local(
    fn: Callable[..., Any], world: int, device_type: str, args: tuple = (), timeout_s: float = 120.0
) -> None:
    """Run ``fn(RankInfo, *args)`` on ``world`` new local processes; returns when all finished."""
    spawn(_entry, args=(fn, world, device_type, free_port(), timeout_s, args), nprocs=world, join=True)
