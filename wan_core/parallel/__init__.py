"""wan_core.parallel: one video on several GPUs with torch.distributed.

* :mod:`.sequence` - Ulysses sequence parallelism (tokens split across ranks, all-to-all over
  heads around self-attention), padding for token counts that do not divide;
* :mod:`.ring` - ring attention for head counts that do not divide by the ranks;
* :mod:`.layout` - :class:`ParallelOptions` and the process groups (CFG split x token split);
* :mod:`.runner` - one DiT call on every rank; :mod:`.service` - rank 0 drives the others;
* :mod:`.distributed` - process-group set-up (nccl on CUDA, gloo on CPU), :mod:`.local` - spawn
  N local ranks, :mod:`.cli` - ``torchrun -m wan_core generate``.

Imports nothing from ComfyUI; ComfyUI's worker processes are managed by ``nodes/multigpu.py``.
"""

from __future__ import annotations

from .layout import Layout, ParallelOptions

__all__ = ["Layout", "ParallelOptions"]
