"""How the ranks share one forward: a CFG (batch) split between two branches and a token split inside each.

With ``cfg_split`` and an even world of N ranks, rank r belongs to branch ``r // (N/2)``
and holds token share ``r % (N/2)`` of its branch's sequence (2 x 2 on four GPUs: ranks
0, 1 run cond, 2, 3 uncond). A call whose batch does not divide in two (cfg = 1) runs on
all N ranks as one sequence-parallel group instead. Every rank creates every group in
the same order, as ``torch.distributed.new_group`` requires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from ..errors import ParallelError
from .distributed import member_of, new_group, world_group
from .options import ParallelOptions
from .sequence import SequenceParallel
from .timing import NO_TIMER, CommTimer

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh


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
        mode, limit = options.attention, options.timeout_s
        whole = SequenceParallel(world_group(), mode, timer) if self.world > 1 else None
        self.unsplit = Split(whole, None, 1, 0)
        self.cfg: Split | None = None
        if options.cfg_split and self.world % 2 == 0:
            half = self.world // 2
            token_groups = [new_group(list(range(b * half, (b + 1) * half)), limit) for b in range(2)]
            batch_groups = [new_group([i, half + i], limit) for i in range(half)]
            branch = self.rank // half
            mine = member_of(token_groups[branch], f"the token group of CFG branch {branch}")
            tokens = SequenceParallel(mine, mode, timer) if half > 1 else None
            batch = member_of(batch_groups[self.rank % half], "its CFG batch group")
            self.cfg = Split(tokens, batch, 2, branch)
        self._mesh: DeviceMesh | None = None  # for FSDP2 weight sharding over all ranks
        if options.shard_weights:
            from torch.distributed.device_mesh import init_device_mesh

            self._mesh = init_device_mesh(self.device.type, (self.world,))

    @property
    def mesh(self) -> DeviceMesh:
        """The device mesh of all ranks that sharded weights live on (ParallelError without shard_weights)."""
        if self._mesh is None:
            raise ParallelError("Weight sharding is off for this group (ParallelOptions.shard_weights).")
        return self._mesh

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
