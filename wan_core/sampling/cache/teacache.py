"""TeaCache: skip the DiT blocks while the rescaled change of the timestep embedding is small.

Per branch and step t, with m_t the modulated input (``e0`` = the 6-way time projection, or ``e`` =
the time embedding) and the published polynomial f of the model:

* steps t < R and t >= C always run (e0: R = 5, C = steps; e: R = 1, C = steps − 1) and reset A = 0;
* otherwise A ← A + f(mean|m_t − m_(t−1)| / mean|m_(t−1)|); while A < threshold the cached residual is
  reused, else A = 0 and the blocks run. m_(t−1) follows every step, reused or not.

This is the authors' Wan2.1 rule (TeaCache4Wan2.1), with one accumulator per guidance branch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ...errors import InputError
from .residual import ResidualState
from .settings import TeaCacheSettings


class TeaCacheState(ResidualState):
    """One expert's TeaCache: per-branch accumulated distance, last embedding and residual."""

    def __init__(self, settings: TeaCacheSettings, coefficients: list[float], steps: int) -> None:
        super().__init__()
        self.settings = settings
        self.rescale = np.poly1d(coefficients)
        self.first, self.cutoff = (5, steps) if settings.embedding == "e0" else (1, steps - 1)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.accumulated: dict[str, float] = {}
        self.previous: dict[str, torch.Tensor] = {}

    def modulated(self, e: torch.Tensor, e0: Any) -> torch.Tensor:
        if self.settings.embedding == "e":
            return e
        if not isinstance(e0, torch.Tensor):
            raise InputError(
                "TeaCache 'e0' needs one timestep per video; this model uses per-token timesteps: "
                "use embedding 'e', or EasyCache / MagCache."
            )
        return e0

    def decide(self, branch: str, k: int, e: torch.Tensor, e0: Any) -> bool:
        m = self.modulated(e, e0)
        before = self.previous.get(branch)
        self.previous[branch] = m
        if k < self.first or k >= self.cutoff or before is None:
            self.accumulated[branch] = 0.0
            return False
        distance = float((m - before).abs().mean() / before.abs().mean())
        self.accumulated[branch] = self.accumulated.get(branch, 0.0) + float(self.rescale(distance))
        threshold = self.settings.threshold  # 0 turns reuse off (f may be negative)
        if threshold > 0 and self.accumulated[branch] < threshold and branch in self.residuals:
            return True
        self.accumulated[branch] = 0.0
        return False
