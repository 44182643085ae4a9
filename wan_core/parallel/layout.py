"""How the ranks share one forward: a CFG (batch) split between two branches and a token split inside each.

With ``cfg_split`` and an even world of N ranks, rank r belongs to branch ``r // (N/2)``
and holds token share ``r % (N/2)`` of its branch's sequence (2 x 2 on four GPUs: ranks
0, 1 run cond, 2, 3 uncond). A call whose batch does not divide in two (cfg = 1) runs on
all N ranks as one sequence-parallel group instead. Every rank creates every group in
the same order, as ``torch.distributed.new_group`` requires.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from .distributed import timeout
from .options import ParallelOptions
from .sequence import SequenceParallel
from .timing import NO_TIMER, CommTimer


@dataclass(frozen=True)
class Split:
    """The groups one forward uses: ``tokens`` (None: this rank has the whole sequence), and the
    ``batch`` group that exchanges branch results (None: no batch split); ``branch`` = this rank's half."""

    tokens: SequenceParallel | None
    batch: dist.ProcessGroup | None
    branches: int
    branch: int


class Layout:
    """The process groups of the default group, built once per process (collectively)."""

    def __init__(self, options: ParallelOptions, device: torch.device, timer: CommTimer = NO_TIMER) -> None:
        self.options = options
        self.device = torch.device(device)
        self.timer = timer
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()
        mode, limit = options.attention, timeout(options.timeout_s)
        whole = SequenceParallel(dist.group.WORLD, mode, timer) if self.world > 1 else None
        self.unsplit = Split(whole, None, 1, 0)
        self.cfg: Split | None = None
        if options.cfg_split and self.world % 2 == 0:
            half = self.world // 2
            token_groups = [dist.new_group(list(range(b * half, (b + 1) * half)), timeout=limit) for b in range(2)]
            batch_groups = [dist.new_group([i, half + i], timeout=limit) for i in range(half)]
            branch = self.rank // half
            tokens = SequenceParallel(token_groups[branch], mode, timer) if half > 1 else None
            self.cfg = Split(tokens, batch_groups[self.rank % half], 2, branch)
        self.mesh = None  # for FSDP2 weight sharding over all ranks
        if options.shard_weights:
            from torch.distributed.device_mesh import init_device_mesh

            self.mesh = init_device_mesh(self.device.type, (self.world,))

    def split_for(self, batch: int) -> Split:
        """The CFG split when ``batch`` divides between the branches, else all ranks on the tokens."""
        if self.cfg is not None and batch % self.cfg.branches == 0:
            return self.cfg
        return self.unsplit

    def describe(self) -> str:
        if self.cfg is None:
            return f"{self.world} ranks, sequence parallel ({self.options.attention} attention)"
        half = self.world // 2
        return f"{self.world} ranks: CFG split 2 x sequence parallel {half} ({self.options.attention} attention)"
