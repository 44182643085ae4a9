"""Sigma schedules with the flow shift, and the timesteps the DiT receives (spec 7.1, 7.2).

Flow matching: x_σ = (1 − σ)·x0 + σ·ε with σ in [0, 1]; the DiT sees t = 1000·σ.
The grids are computed in float64 (numpy, as the official schedulers do), the σ array
is then stored as fp32 and the official timesteps are int64(σ'·1000) of the float64 σ'.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from ..errors import InputError
from .settings import SamplerSettings

log = logging.getLogger(__name__)

NUM_TRAIN_TIMESTEPS = 1000
# The official FlowUniPCMultistepScheduler is built with shift=1, so its sigma_max is
# the fp32 value of 1 − 1/1000, read back as a Python float.
UNIPC_SIGMA_MAX = float(torch.tensor(1.0 - 1.0 / NUM_TRAIN_TIMESTEPS, dtype=torch.float32))


@dataclass(frozen=True)
class Schedule:
    """sigmas: fp32 [N+1] (the last is where sampling stops, 0 for a full run);
    timesteps: [N] as fed to the DiT (int64 in "official" mode, fp32 in "float" mode), 0..1000."""

    sigmas: torch.Tensor
    timesteps: torch.Tensor

    @property
    def steps(self) -> int:
        return int(self.timesteps.shape[0])


Sigmas = TypeVar("Sigmas", np.ndarray, torch.Tensor, float)


def shift_sigmas(sigmas: Sigmas, shift: float) -> Sigmas:
    """σ' = s·σ / (1 + (s − 1)·σ): s > 1 spends more steps at high noise."""
    return shift * sigmas / (1.0 + (shift - 1.0) * sigmas)


def base_grid(solver: str, steps: int) -> np.ndarray:
    """The official unshifted σ grid [steps], float64, without the final 0.

    UniPC starts at 0.999 (its scheduler's sigma_max); DPM++ starts at exactly 1 (the official
    ``get_sampling_sigmas``). Euler is not in the official code; it uses the DPM++ grid, which is
    ComfyUI's "simple" flow schedule as well.
    """
    start = UNIPC_SIGMA_MAX if solver == "unipc" else 1.0
    return np.linspace(start, 0.0, steps + 1)[:steps].copy()


def timesteps_for(sigmas64: np.ndarray, mode: str) -> torch.Tensor:
    """DiT timesteps [N] from float64 σ [N]: int64-truncated (official) or fp32 1000·σ (float)."""
    if mode == "official":
        return torch.from_numpy(sigmas64 * NUM_TRAIN_TIMESTEPS).to(torch.int64)
    fp32 = torch.from_numpy(sigmas64).to(torch.float32)
    return fp32 * NUM_TRAIN_TIMESTEPS


def build_schedule(settings: SamplerSettings) -> Schedule:
    """The σ array and DiT timesteps of one run (user σ, or the shifted official grid, then denoise)."""
    if settings.sigmas is not None:
        return _user_schedule(settings)
    steps = int(settings.steps)
    total = steps if settings.denoise >= 1.0 else max(steps, int(steps / settings.denoise))
    sig = shift_sigmas(base_grid(settings.solver, total), float(settings.shift))
    full = np.concatenate([sig, [0.0]])[-(steps + 1) :]
    return Schedule(
        sigmas=torch.from_numpy(full.astype(np.float32)),
        timesteps=timesteps_for(full[:-1], settings.timestep_mode),
    )


def _user_schedule(settings: SamplerSettings) -> Schedule:
    sig = _as_float64(settings.sigmas)
    if sig.ndim != 1 or sig.shape[0] < 2:
        raise InputError(
            f"sigmas must be a 1-D list of at least 2 values (start ... end), got shape {tuple(sig.shape)}."
        )
    if not np.all(np.isfinite(sig)) or sig.min() < 0.0 or sig.max() > 1.0:
        raise InputError(
            f"sigmas must lie in [0, 1] for Wan flow models, got min {sig.min():.4g}, max {sig.max():.4g}; "
            "use a flow-matching schedule (e.g. shift applied to linspace(1, 0))."
        )
    if np.any(np.diff(sig) > 0.0):
        at = int(np.argmax(np.diff(sig) > 0.0))
        raise InputError(
            f"sigmas must not increase (sampling runs from noise towards 0), but sigma {at} = {sig[at]:.4g} is "
            f"followed by {sig[at + 1]:.4g}: sort the list from 1 down to 0."
        )
    if np.any(sig[:-1] <= 0.0):
        raise InputError(
            f"only the last sigma may be 0 (a step cannot start at σ = 0), got {sig.tolist()}: "
            "end the list with a single 0."
        )
    if settings.denoise < 1.0:
        log.warning(
            "denoise=%s is ignored because explicit sigmas were given (truncate the sigmas instead).", settings.denoise
        )
    return Schedule(
        sigmas=torch.from_numpy(sig.astype(np.float32)), timesteps=timesteps_for(sig[:-1], settings.timestep_mode)
    )


def _as_float64(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64).numpy().copy()
    return np.asarray(list(values), dtype=np.float64)


def steps_at_or_above(schedule: Schedule, boundary: float) -> int:
    """How many leading steps have t >= boundary (0..1000 scale): the high-noise expert's share."""
    return int((schedule.timesteps.to(torch.float64) >= boundary).sum())


def parse_sigmas(text: str) -> tuple[float, ...]:
    """A user's σ list "1.0, 0.9375, 0.8333, 0.625, 0" (commas, spaces or semicolons; optional [ ]).

    The values are checked when the schedule is built (``SamplerSettings.sigmas``).
    """
    parts = [p for p in re.split(r"[\s,;]+", str(text).strip().strip("[]")) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise InputError(
            f"Custom sigmas must be numbers separated by commas, e.g. '1.0, 0.9375, 0.8333, 0.625, 0'; got {text!r}."
        ) from None
    if len(values) < 2:
        raise InputError(f"Custom sigmas need at least 2 values (start ... end); got {text!r}.")
    return values
