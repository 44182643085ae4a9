"""Progress reporting and interruption: one callback type for all long work.

Sampling steps and VAE chunks call :meth:`RunHooks.step`; ComfyUI's bridge maps
it to its progress bar and interrupt button, the CLI to a terminal bar. An
interrupt raises :class:`~wan_core.errors.WanInterrupted` *between* units of work,
so the caller can free memory and the next run starts clean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .errors import WanInterrupted

# (step, total, preview) -> None. preview is an RGB image [H, W, 3] in 0..1 or None.
ProgressFn = Callable[[int, int, "torch.Tensor | None"], None]


@dataclass
class RunHooks:
    """Callbacks for a long-running call. All fields are optional.

    ``progress(step, total, preview)`` is called after each unit of work;
    ``interrupted()`` returning True stops the work at the next check;
    ``want_preview`` asks samplers to compute a preview image (costs a little time);
    ``on_report(report)`` receives the sampler's per-step report (which steps ran the DiT,
    a :class:`wan_core.sampling.cache.StepReport`) at the end of a run.
    """

    progress: ProgressFn | None = None
    interrupted: Callable[[], bool] | None = None
    want_preview: bool = False
    on_report: Callable[[Any], None] | None = None

    def check(self) -> None:
        """Raise WanInterrupted if the caller asked to stop."""
        if self.interrupted is not None and self.interrupted():
            raise WanInterrupted("Interrupted by the user; partial results were discarded.")

    def report(self, report: Any) -> None:
        """Hand a finished run's report to the caller, if it asked for one."""
        if self.on_report is not None:
            self.on_report(report)

    def step(self, step: int, total: int, preview: torch.Tensor | None = None) -> None:
        """Report progress, then check for interruption."""
        if self.progress is not None:
            self.progress(step, total, preview)
        self.check()


NO_HOOKS = RunHooks()
