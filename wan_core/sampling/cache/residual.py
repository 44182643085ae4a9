"""Shared machinery of the caches that skip the DiT's transformer blocks (MagCache, TeaCache).

Inside the DiT the tokens x enter the first block and leave the last one as y; the residual y − x is
cached per guidance branch. A method decides per branch and step whether to reuse it; when every
branch of a forward reuses, no block runs (the patch embedding and the head still do). When only
some branches reuse, the blocks run for the whole forward and the reusing branches take x + residual,
so each branch follows its own decisions exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .base import BlockHook, MethodState, ModelCall, StepCache, branch_slices
from .report import StepRecord


class ResidualState(MethodState):
    """Per-branch block residuals of one expert; subclasses decide when to reuse them."""

    def reset(self) -> None:
        self.residuals: dict[str, torch.Tensor] = {}

    def decide(self, branch: str, k: int, e: torch.Tensor, e0: Any) -> bool:
        """Reuse the cached residual of ``branch`` at step ``k``? (e / e0: this branch's embeddings).

        Implementations must answer False while ``branch`` has no residual yet (``branch in self.residuals``).
        """
        raise NotImplementedError

    def computed(self, branch: str, k: int, residual: torch.Tensor) -> None:
        """The blocks ran for ``branch`` at step ``k`` and produced ``residual`` (calibration hook)."""

    def step(self, k: int, record: StepRecord) -> StepCache:
        return ResidualStep(self, k, record)


class ResidualStep(StepCache):
    def __init__(self, state: ResidualState, k: int, record: StepRecord) -> None:
        super().__init__(record)
        self.state, self.k = state, k

    def start(self, branches: tuple[str, ...], x: torch.Tensor) -> None:
        super().start(branches, x)
        self.state.check_layout(branches, x, self.k)

    def forward(self, branches: tuple[str, ...], x: torch.Tensor, call: ModelCall) -> torch.Tensor:
        hook = _Hook(self.state, self.k, branches)
        out = call(hook)
        if not hook.called:
            raise RuntimeError("the model ignored block_cache: MagCache / TeaCache need wan_core's WanDiT")
        self.record.ran += len(branches) if hook.ran else 0
        return out


class _Hook(BlockHook):
    """The ``block_cache`` of one forward: its branches, stacked along the batch, cond first."""

    def __init__(self, state: ResidualState, k: int, branches: tuple[str, ...]) -> None:
        self.state, self.k, self.branches = state, k, branches
        self.called = self.ran = False

    def run_blocks(
        self, x: torch.Tensor, e: torch.Tensor, e0: Any, blocks: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        self.called = True
        s, parts = self.state, branch_slices(self.branches, x.shape[0])
        reuse = [s.decide(b, self.k, e[part], _rows(e0, part)) for b, part in parts]
        if all(reuse):
            return x + torch.cat([s.residuals[b] for b, _ in parts])
        self.ran = True
        y = blocks(x.clone())  # the blocks update the residual stream in place; keep x for y − x
        for (b, part), reused in zip(parts, reuse):
            if reused:
                y[part] = x[part] + s.residuals[b]
            else:
                s.residuals[b] = y[part] - x[part]
                s.computed(b, self.k, s.residuals[b])
        return y


def _rows(e0: Any, part: slice) -> Any:
    return e0[part] if isinstance(e0, torch.Tensor) else e0
