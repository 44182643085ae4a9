"""The step cache of one sampling call: the strategy object the loop asks for every step.

Expert-aware: each DiT of the run (the Wan2.2 A14B high- and low-noise experts) gets its own, fresh
method state when its first step comes, and the previous expert's state is dropped, so nothing cached
crosses the switch. A new run starts from nothing; a change of the step layout (CFG on/off, batch,
shape) resets the state as well (:class:`~wan_core.sampling.cache.base.MethodState`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from ...errors import InputError
from .base import MethodState, StepCache
from .curves import magcache_ratios, model_key, teacache_coefficients
from .easycache import EasyCacheState
from .magcache import MagCacheCalibration, MagCacheState, save_calibrated
from .report import StepRecord, StepReport
from .settings import CacheSettings, EasyCacheSettings, MagCacheSettings, TeaCacheSettings
from .teacache import TeaCacheState

log = logging.getLogger(__name__)


def supports_block_cache(dit: Any) -> bool:
    """Whether a DiT takes ``block_cache`` (wan_core's WanDiT does; test stand-ins may not)."""
    return bool(getattr(dit, "supports_block_cache", False))


class CacheRun:
    """Per sampling call. ``sigmas``: the run's σ [N+1]; ``roles``: per step "high" / "low" for the A14B
    experts, else None; ``latent_hw``: latent height and width (picks Wan2.1 I2V 480p / 720p data)."""

    def __init__(
        self,
        settings: CacheSettings | None,
        sigmas: list[float],
        shift: float,
        roles: list[str] | None = None,
        latent_hw: tuple[int, int] = (60, 104),
    ) -> None:
        self.settings, self.sigmas, self.shift = settings, sigmas, float(shift)
        self.steps = len(sigmas) - 1
        self.roles, self.latent_hw = roles, latent_hw
        self.report = StepReport(method=settings.method if settings is not None else "none")
        self.calibration: list[float] | None = None
        if isinstance(settings, MagCacheSettings) and settings.calibrate:
            self.calibration = [math.nan] * (2 * self.steps)
            self.report.method = "magcache calibration"
        self._expert: tuple[Any, str | None] | None = None  # (DiT, role) of the current state
        self._state: MethodState | None = None
        self._key: str | None = None

    def step(self, k: int, dit: Any) -> StepCache:
        """The strategy for step ``k`` run by ``dit``."""
        role = self.roles[k] if self.roles is not None else None
        if self._expert is None or dit is not self._expert[0] or role != self._expert[1]:
            self._switch(k, dit, role)
        record = StepRecord(step=k, expert=role)
        self.report.records.append(record)
        return StepCache(record) if self._state is None else self._state.step(k, record)

    def _switch(self, k: int, dit: Any, role: str | None) -> None:
        if self._state is not None:
            self._state.finish()
            log.info("Step %d: new expert, its step cache starts empty.", k + 1)
        self._expert, self._state = (dit, role), None
        if self.settings is not None:
            self._key = model_key(getattr(dit, "config", None), self.roles is not None, self.latent_hw)
            self._state = self._new_state(self.settings, self._key, dit)

    def _new_state(self, s: CacheSettings, key: str, dit: Any) -> MethodState:
        if isinstance(s, EasyCacheSettings):
            return EasyCacheState(s, self.sigmas, self.shift)
        if not supports_block_cache(dit):
            raise InputError(f"{s.method} skips the DiT's blocks and needs wan_core's WanDiT; use EasyCache.")
        if isinstance(s, MagCacheSettings):
            if self.calibration is not None:
                return MagCacheCalibration(self.calibration)
            given = np.asarray(s.ratios, dtype=np.float64) if s.ratios is not None else None
            curve, ratios = ("given", given) if given is not None else magcache_ratios(s.curve, key)
            log.info("MagCache: %s curve for %s", curve, key)
            return MagCacheState(s, ratios, self.steps)
        if isinstance(s, TeaCacheSettings):
            name, coefficients = teacache_coefficients(s.coefficients, key, s.embedding)
            log.info("TeaCache: %s coefficients (%s) for %s", name, s.embedding, key)
            return TeaCacheState(s, coefficients, self.steps)
        raise InputError(f"Unknown cache settings {s!r}.")

    def finish(self) -> StepReport:
        """End of the run: the report (logged), and the calibration file when calibrating."""
        if self._state is not None:
            self._state.finish()
        if self.calibration is not None and isinstance(self.settings, MagCacheSettings):
            meta = {
                "model": self._key,
                "steps": self.steps,
                "shift": self.shift,
                "source": "calibrated with wan_core (MagCache calibrate)",
                "about": "interleaved [cond, uncond] magnitude ratio per step; the first pair is padding",
            }
            save_calibrated(str(self.settings.calibrate), self.calibration, meta)
        self.release()
        log.info("Step cache %s", self.report.summary())
        return self.report

    def release(self) -> None:
        """Drop every cached tensor (end of run, interrupt or error)."""
        self._state, self._expert = None, None
