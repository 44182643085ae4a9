"""Entry point of a spawned worker process (rank >= 1 of a group whose rank 0 is the host process).

The host (ComfyUI, through ``nodes/multigpu.py``) starts it with torch.multiprocessing;
it joins the process group, then serves commands from its queue until told to stop or
until the host process disappears.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.multiprocessing as mp

from .distributed import RankInfo, init_group, teardown
from .layout import Layout, ParallelOptions
from .links import QueueInbox
from .service import ModelHost, serve


def _parent_alive() -> bool:
    parent = mp.parent_process()
    return parent is None or parent.is_alive()


def worker_main(
    rank: int, world: int, device: str, init_method: str, options: ParallelOptions, commands, answers
) -> None:
    """Rank ``rank`` of ``world`` on ``device``; rendezvous at ``init_method`` (tcp://host:port)."""
    logging.basicConfig(level=logging.INFO, format=f"[wan worker {rank}] %(levelname)s %(name)s: %(message)s")
    threads = os.environ.get("WAN_CORE_WORKER_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    info = RankInfo(rank, world, torch.device(device))
    inbox = QueueInbox(rank, commands, answers, _parent_alive)
    try:
        init_group(info, init_method, options.timeout_s)
        serve(ModelHost(Layout(options, info.device)), inbox)
    finally:
        teardown()
