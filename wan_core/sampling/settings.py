"""SamplerSettings: everything that decides one sampling run besides the model and the conditioning."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..validation import check_sampler_settings
from .cache.settings import CACHE_CLASSES, CacheSettings
from .guidance import GuidanceOptions
from .windows import ContextWindows

SOLVERS = ("unipc", "dpm++", "euler")
TIMESTEP_MODES = ("official", "float")

Guidance = float | tuple[float, float]


@dataclass(frozen=True)
class SamplerSettings:
    """One sampling run.

    * ``steps``: solver steps actually run (model evaluations per guidance branch).
    * ``shift``: flow shift s in σ' = s·σ / (1 + (s − 1)·σ).
    * ``cfg``: classifier-free guidance scale; a ``(low_noise, high_noise)`` pair gives the
      two Wan2.2 A14B experts their own scale (the official tuple order).
    * ``solver``: "unipc" (official default), "dpm++" (official alternative) or "euler".
    * ``seed``: noise seed; batch element i uses ``seed + i``.
    * ``denoise``: fraction of the schedule to run, starting from ``Conditioning.init_latent``
      (video-to-video). As in ComfyUI's KSampler, ``steps`` stay the number of steps run: the
      schedule is built for ``int(steps / denoise)`` steps and only its last ``steps`` are used.
    * ``sigmas``: user-supplied σ values [N+1] in 0..1 (the last one is where sampling stops,
      usually 0); they override steps, shift and denoise.
    * ``timestep_mode``: what the DiT receives as t. "official" = int64(σ'·1000) truncated, as the
      official Wan repositories feed it (reproduces their videos); "float" = 1000·σ as fp32, as
      ComfyUI does. The solvers use the float σ in both modes.
    * ``batch_cfg``: run the cond and uncond branches in one batched forward (faster, more memory);
      False runs them one after the other (the official order: cond first).
    * ``cache``: a step cache (EasyCache / MagCache / TeaCache settings, see
      :mod:`wan_core.sampling.cache`) or None; ``guidance``: opt-in CFG savings
      (:class:`~wan_core.sampling.guidance.GuidanceOptions`) or None.
    * ``context_windows``: sample in overlapping windows along time (long videos), or None.
    """

    steps: int = 50
    shift: float = 5.0
    cfg: Guidance = 5.0
    solver: str = "unipc"
    seed: int = 0
    batch_size: int = 1
    denoise: float = 1.0
    sigmas: Sequence[float] | torch.Tensor | None = None
    timestep_mode: str = "official"
    batch_cfg: bool = True
    cache: CacheSettings | None = None
    guidance: GuidanceOptions | None = None
    context_windows: ContextWindows | None = None

    def __post_init__(self) -> None:
        check_sampler_settings(self)  # finite numbers in range (NaN passes the comparisons below)
        if self.solver not in SOLVERS:
            raise InputError(f"Unknown solver {self.solver!r}; use one of {', '.join(SOLVERS)}.")
        if self.timestep_mode not in TIMESTEP_MODES:
            raise InputError(f"Unknown timestep_mode {self.timestep_mode!r}; use 'official' or 'float'.")
        if self.sigmas is None and int(self.steps) < 1:
            raise InputError(f"steps must be at least 1, got {self.steps}.")
        if not 0.0 < float(self.denoise) <= 1.0:
            raise InputError(f"denoise must lie in (0, 1], got {self.denoise}.")
        if int(self.batch_size) < 1:
            raise InputError(f"batch_size must be at least 1, got {self.batch_size}.")
        if float(self.shift) <= 0.0:
            raise InputError(f"shift must be positive, got {self.shift}.")
        if self.cache is not None and not isinstance(self.cache, tuple(CACHE_CLASSES.values())):
            raise InputError(f"cache must be EasyCache / MagCache / TeaCache settings or None, got {self.cache!r}.")
        if self.guidance is not None and not isinstance(self.guidance, GuidanceOptions):
            raise InputError(f"guidance must be GuidanceOptions or None, got {self.guidance!r}.")
        if self.cache is not None and self.context_windows is not None:
            raise InputError(
                f"A step cache ({self.cache.method}) and context windows cannot be combined: the cache reuses "
                "whole-latent results, each window is a different slice. Remove one of them."
            )
        if isinstance(self.cfg, (tuple, list)) and len(self.cfg) != 2:
            raise InputError(f"cfg must be a number or a (low_noise, high_noise) pair, got {self.cfg!r}.")

    def cfg_for(self, high_noise: bool) -> float:
        """The guidance scale of one expert (both experts share a scalar cfg)."""
        if isinstance(self.cfg, (tuple, list)):
            return float(self.cfg[1] if high_noise else self.cfg[0])
        return float(self.cfg)
