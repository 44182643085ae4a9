"""The strategy interface between the sampling loop, the guidance and a step cache.

Per step the loop asks the run's cache for a :class:`StepCache`; the guidance then calls
``start(branches, x)`` once and ``forward(branches, x_in, call)`` for every DiT forward of the step
(one batched cond + uncond forward, or one per branch). ``call(hook)`` runs the model; a cache that
works inside the DiT passes a :class:`BlockHook`, which the DiT uses to run (or skip) its blocks.
The base class is the "no cache" strategy: it always calls the model and only counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import torch

from .report import StepRecord

log = logging.getLogger(__name__)

COND = "cond"
UNCOND = "uncond"


class BlockHook(Protocol):
    """Given to the DiT's forward as ``block_cache``: runs the transformer blocks or reuses a residual.

    ``x``: tokens before the first block [N, S, D] fp32 (N = branches × batch, cond first);
    ``e``: time embedding [N, 1|S, D]; ``e0``: its 6-way projection [N, 1, 6, D] (or a per-token table);
    ``blocks(x)`` runs every block and returns the tokens after the last one.
    """

    def run_blocks(
        self, x: torch.Tensor, e: torch.Tensor, e0: Any, blocks: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor: ...


ModelCall = Callable[["BlockHook | None"], torch.Tensor]


class StepCache:
    """One step of one run, seen by the guidance. This base class caches nothing."""

    def __init__(self, record: StepRecord | None = None) -> None:
        self.record = record if record is not None else StepRecord(step=0)

    def start(self, branches: tuple[str, ...], x: torch.Tensor) -> None:
        """Called once per step before its forwards: ``x`` is the latent [B, C, T, h, w]."""
        self.record.needed = len(branches)

    def forward(self, branches: tuple[str, ...], x: torch.Tensor, call: ModelCall) -> torch.Tensor:
        """One DiT forward over ``branches`` (x: [len(branches)·B, ...]); returns the model output."""
        out = call(None)
        self.record.ran += len(branches)
        return out

    def zero(self) -> None:
        """The guidance used a zero velocity this step (CFG-Zero* zero-init): no DiT call."""
        self.record.zero = True


def branch_slices(branches: tuple[str, ...], n: int) -> list[tuple[str, slice]]:
    """(branch, batch slice) of each branch in a forward of batch n (branches stacked, cond first)."""
    size = n // len(branches)
    return [(b, slice(i * size, (i + 1) * size)) for i, b in enumerate(branches)]


class MethodState:
    """Per-expert state of one caching method; forgets everything when the step layout changes.

    The layout is what one step's forwards look like: the guidance branches (CFG on or off) and the
    latent's shape, dtype and device. A cache entry from another layout would be reused wrongly.
    """

    def __init__(self) -> None:
        self.layout: tuple | None = None

    def check_layout(self, branches: tuple[str, ...], x: torch.Tensor, step: int) -> None:
        layout = (tuple(branches), tuple(x.shape), x.dtype, x.device)
        if self.layout is not None and layout != self.layout:
            log.info("Step %d: the batch / CFG layout changed; the step cache starts over.", step + 1)
            self.reset()
        self.layout = layout

    def reset(self) -> None:
        """Drop every cached tensor and statistic (the layout is set again by the caller)."""
        raise NotImplementedError

    def step(self, k: int, record: StepRecord) -> StepCache:
        """The :class:`StepCache` of step ``k`` (0-based)."""
        raise NotImplementedError

    def finish(self) -> None:
        """End of this expert's share of the run (calibration writes its data here)."""
