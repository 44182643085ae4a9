"""The hook through which :mod:`wan_core.parallel` splits a DiT forward's tokens across ranks.

The DiT knows only this protocol: ``WanDiT.set_sequence_parallel(split)`` hands every
self-attention the object, and the forward pass calls :meth:`TokenSplit.scatter_inputs`
after the embeddings and :meth:`TokenSplit.gather` after the head. Everything between
(modulation, cross-attention, FFN) is per token and runs on the local share unchanged.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class TokenSplit(Protocol):
    """Sequence parallelism over one process group (see ``wan_core.parallel.sequence``)."""

    def scatter_inputs(
        self, x: torch.Tensor, e: torch.Tensor, e0: Any, rope: torch.Tensor, vace: Any
    ) -> tuple[torch.Tensor, torch.Tensor, Any, torch.Tensor, Any]:
        """Full-sequence block inputs -> this rank's share: x [B, S, D], e [B, 1|S, D], e0 (dense or
        a TokenTable), rope [S, 1, d/2], vace (a VaceState or None). Remembers S for :meth:`gather`."""
        ...

    def gather(self, tokens: torch.Tensor) -> torch.Tensor:
        """This rank's share [B, S_local, C] -> every rank's [B, S, C] (padding removed)."""
        ...

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str) -> torch.Tensor:
        """Self-attention of local q/k/v [B, S_local, H, d] over the whole sequence -> [B, S_local, H, d]."""
        ...
