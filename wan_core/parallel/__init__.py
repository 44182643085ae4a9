"""wan_core.parallel: one video on several GPUs with torch.distributed.

* :mod:`.sequence` - Ulysses sequence parallelism (tokens split across ranks, all-to-all over
  heads around self-attention), padding for token counts that do not divide;
* :mod:`.ring` - ring attention for head counts that do not divide by the ranks;
* :mod:`.options` / :mod:`.layout` - :class:`ParallelOptions` and the process groups (CFG split
  x token split); :mod:`.runner` - one DiT call on every rank;
* :mod:`.service` - rank 0 drives, the other ranks serve (:class:`ParallelDiT`); :mod:`.links` -
  the command channels; :mod:`.worker` - a spawned worker's entry point;
* :mod:`.distributed` - process-group set-up (nccl on CUDA, gloo on CPU); :mod:`.local` - start
  N local ranks; :mod:`.cli` - ``torchrun -m wan_core generate``; :mod:`.fsdp` - weight sharding.

Imports nothing from ComfyUI; ComfyUI's worker processes are managed by ``nodes/multigpu.py``.
Submodules that need torch are imported lazily, so ``options`` stays cheap for the CLI's --help.
"""

from __future__ import annotations

from ..lazy import lazy_attributes
from .options import ParallelOptions

_LAZY = {
    "Layout": (".layout", "Layout"),
    "ParallelDiT": (".service", "ParallelDiT"),
    "DiTSpec": (".service", "DiTSpec"),
}

__all__ = ["ParallelOptions", *_LAZY]

__getattr__ = lazy_attributes(__name__, _LAZY)
