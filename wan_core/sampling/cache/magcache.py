"""MagCache: skip the DiT blocks while the accumulated magnitude-ratio error is small.

γ_t (from a per-model curve) is the mean over tokens of ‖r_t‖ / ‖r_(t−1)‖ for the block residual r.
Per branch b, with the DiT-call index i = 2t + b (cond 0, uncond 1; as in the authors' Wan code):

* calls with i < int(2 · steps · retention) always run;
* otherwise Γ ← Γ·γ_i, n ← n + 1, E ← E + |1 − Γ|; while E < threshold and n <= K the cached residual is
  reused, else Γ = 1, E = 0, n = 0 and the blocks run.

A curve recorded for another step count is resampled per branch by nearest index. Calibration
(``MagCacheSettings.calibrate``) runs every step and records γ for this model instead.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from .curves import ratios_for_steps, save_calibration
from .residual import ResidualState
from .settings import MagCacheSettings

log = logging.getLogger(__name__)

BRANCH_INDEX = {"cond": 0, "uncond": 1}


class _Accumulator:
    def __init__(self) -> None:
        self.ratio, self.error, self.count = 1.0, 0.0, 0


class MagCacheState(ResidualState):
    """One expert's MagCache: per-branch accumulators and residuals over a ratio curve [2·steps]."""

    def __init__(self, settings: MagCacheSettings, ratios: np.ndarray, steps: int) -> None:
        super().__init__()
        self.settings = settings
        self.ratios = ratios_for_steps(np.asarray(ratios, dtype=np.float64), steps)
        self.first_call = int(2 * steps * settings.retention)
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.acc = {b: _Accumulator() for b in BRANCH_INDEX}

    def decide(self, branch: str, k: int, e: torch.Tensor, e0: Any) -> bool:
        index = 2 * k + BRANCH_INDEX[branch]
        if index < self.first_call:
            return False
        a, s = self.acc[branch], self.settings
        a.ratio *= float(self.ratios[index])
        a.count += 1
        a.error += abs(1.0 - a.ratio)
        if a.error < s.threshold and a.count <= s.k and branch in self.residuals:
            return True
        self.acc[branch] = _Accumulator()
        return False


class MagCacheCalibration(ResidualState):
    """Runs every step and records γ per step and branch; the run's curve is saved at the end."""

    def __init__(self, record: list[float]) -> None:
        super().__init__()
        self.record = record  # shared by the experts of one run: [2·steps], 1.0 where nothing is known
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.previous: dict[str, torch.Tensor] = {}

    def decide(self, branch: str, k: int, e: torch.Tensor, e0: Any) -> bool:
        return False

    def computed(self, branch: str, k: int, residual: torch.Tensor) -> None:
        before = self.previous.get(branch)
        if before is not None:
            ratio = (residual.norm(dim=-1) / before.norm(dim=-1)).mean()
            self.record[2 * k + BRANCH_INDEX[branch]] = float(ratio)
        self.previous[branch] = residual


def save_calibrated(path: str, record: list[float], meta: dict[str, Any]) -> None:
    """Write the recorded curve; steps that ran without CFG copy their cond value to uncond."""
    ratios = list(record)
    for i in range(0, len(ratios), 2):
        if np.isnan(ratios[i + 1]):
            ratios[i + 1] = ratios[i]
    ratios = [1.0 if np.isnan(r) else r for r in ratios]
    written = save_calibration(path, ratios, meta)
    log.info("MagCache: calibrated magnitude ratios of %s saved to %s", meta.get("model", "the model"), written)
