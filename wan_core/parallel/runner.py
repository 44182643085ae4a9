"""One DiT call on every rank: pick the split, cut the batch, run the local share, join the results.

Every rank runs :func:`run_forward` with the same :class:`ForwardCall`; rank 0 got it from
the sampler, the others from rank 0 (see :mod:`.service`). With a CFG split, branch b
computes rows ``[b*B/2, (b+1)*B/2)`` of the batch (the sampler batches cond first, then
uncond) and the branches swap results with one all-gather.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.distributed as dist

from .layout import Layout, Split
from .timing import CommTimer


def _rows(value: Any, batch: int, branch: int, branches: int) -> Any:
    """Rows of ``branch`` of a tensor batched over ``batch`` (a batch-1 tensor is shared); lists element-wise."""
    n = batch // branches
    if isinstance(value, torch.Tensor):
        return value[branch * n : (branch + 1) * n] if value.ndim and value.shape[0] == batch else value
    if isinstance(value, (list, tuple)):  # e.g. several VACE contexts, each [B, 96, T, h, w]
        return [_rows(v, batch, branch, branches) for v in value]
    return value


def _context_rows(context: Any, batch: int, branch: int, branches: int) -> Any:
    """Text contexts: one [L_i, D] per sample (a list of ``batch``), a shared one, or a [B, L, D] tensor."""
    n = batch // branches
    if isinstance(context, (list, tuple)):
        return list(context[branch * n : (branch + 1) * n]) if len(context) == batch else context
    return _rows(context, batch, branch, branches)


def _to_cpu(value: Any) -> Any:
    """A CPU copy (also of CPU tensors: what is sent must not alias what the caller keeps using)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, (list, tuple)):
        return [_to_cpu(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class ForwardCall:
    """The arguments of one ``dit(x, t, context, **extras)`` call (x [B, C, T, h, w])."""

    x: torch.Tensor
    t: Any
    context: Any
    extras: dict = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return int(self.x.shape[0])

    def rows(self, branch: int, branches: int) -> ForwardCall:
        """The call for one branch of a batch split (B must divide by ``branches``)."""
        b = self.batch
        return ForwardCall(
            self.x[branch * (b // branches) : (branch + 1) * (b // branches)],
            _rows(self.t, b, branch, branches),
            _context_rows(self.context, b, branch, branches),
            {k: _rows(v, b, branch, branches) for k, v in self.extras.items()},
        )

    def to_cpu(self) -> ForwardCall:
        """A private copy whose tensors live on the CPU, for sending to other processes.

        A copy even on the CPU: the receiving process maps the sent tensors' memory, so the
        caller's own tensors (the latent, cached text embeddings) must not be the ones sent.
        """
        return replace(
            self, x=_to_cpu(self.x), t=_to_cpu(self.t), context=_to_cpu(self.context), extras=_to_cpu(self.extras)
        )


def _join_branches(out: torch.Tensor, split: Split, timer: CommTimer) -> torch.Tensor:
    parts = [torch.empty_like(out) for _ in range(split.branches)]
    with timer.measure():
        dist.all_gather(parts, out.contiguous(), group=split.batch)
    return torch.cat(parts, dim=0)


def run_forward(dit: Any, layout: Layout, call: ForwardCall) -> torch.Tensor:
    """This rank's part of one DiT call; returns the whole velocity [B, C, T, h, w] on every rank."""
    split = layout.split_for(call.batch)
    local = call.rows(split.branch, split.branches) if split.batch is not None else call
    if dit.sequence_parallel is not split.tokens:
        dit.set_sequence_parallel(split.tokens)
    out = dit(local.x, local.t, local.context, **local.extras)
    if split.batch is not None:
        out = _join_branches(out, split, layout.timer)
    return out
