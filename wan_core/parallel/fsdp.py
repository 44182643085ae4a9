"""Weight sharding with FSDP2 (``torch.distributed.fsdp.fully_shard``): 14B on GPUs too small for a full copy.

Each block (and the root's embeddings and head) keeps 1/N of its parameters on each rank;
a block's full weights are all-gathered just before it runs and freed after it. Every rank
runs the same blocks in the same order (also under a CFG split), so the all-gathers match.
LoRAs must be merged before sharding: a sharded model's LoRA stack is fixed.
"""

from __future__ import annotations

import weakref

from torch import nn
from torch.distributed.device_mesh import DeviceMesh

from ..errors import ParallelError

_sharded: weakref.WeakSet = weakref.WeakSet()


def is_sharded(module: object) -> bool:
    return isinstance(module, nn.Module) and module in _sharded


def shard_blocks(dit: nn.Module, mesh: DeviceMesh) -> None:
    """FSDP2-shard ``dit`` over ``mesh`` (all ranks); its shards move to the mesh's device."""
    from torch.distributed.fsdp import fully_shard

    if getattr(dit, "block_swap", None) is not None:
        raise ParallelError("Weight sharding and block swap do not combine: set block_swap to 0 or drop sharding.")
    for block in getattr(dit, "vace_blocks", []):  # the hint projections run outside the block's forward
        for name in ("before_proj", "after_proj"):
            if hasattr(block, name):
                fully_shard(getattr(block, name), mesh=mesh)
    for block in [*dit.get_submodule("blocks").children(), *getattr(dit, "vace_blocks", [])]:
        fully_shard(block, mesh=mesh)
    fully_shard(dit, mesh=mesh)
    _sharded.add(dit)
