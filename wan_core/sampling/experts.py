"""Wan2.2 A14B: two experts in one sampling run, switched by timestep (spec 7.5).

At each step t >= boundary * 1000 uses the high-noise expert, else the low-noise one; both
share the text, conditioning, guidance settings and solver state. When the compute device
cannot hold both, the inactive expert waits on an offload device (CPU) so that only one is
resident at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..devices import empty_cache, free_memory, module_bytes
from ..errors import InputError
from ..validation import check_number
from .model import DiTLike

log = logging.getLogger(__name__)

OFFLOAD_MODES = ("auto", "always", "never")
# The official switch points as a fraction of the 0..1000 timestep range (the release configs' ``boundary``).
# Wan2.2 Fun camera: VideoX-Fun samples it with its I2V config (boundary 0.9).
OFFICIAL_BOUNDARIES = {"t2v": 0.875, "i2v": 0.9, "fun-camera": 0.9}
# Head-room kept free besides the incoming expert's weights (activations, allocator slack).
_HEADROOM = 0.10


def official_boundary(task: str) -> float:
    """The release's expert boundary for ``task`` (0..1); InputError for tasks without experts."""
    if task not in OFFICIAL_BOUNDARIES:
        raise InputError(
            f"No official expert boundary for task {task!r}; pass a boundary "
            "(0.875 for T2V, 0.9 for I2V, as a fraction of the timestep range)."
        )
    return OFFICIAL_BOUNDARIES[task]


@dataclass(frozen=True, eq=False)
class Experts:
    """The high-noise and low-noise DiTs of a Wan2.2 A14B model.

    ``boundary``: the switch point as a fraction of the timestep range, in (0, 1] (the
    official configs' unit, e.g. 0.875: steps with t >= 875 use ``high``); None takes the
    official value from ``low.config.task``. Guidance per expert comes from
    ``SamplerSettings.cfg`` (a (low_noise, high_noise) pair).
    ``offload``: "auto" moves the inactive expert to the CPU only when free device memory is
    short, "always" keeps one expert resident, "never" leaves both where they are.
    """

    high: DiTLike
    low: DiTLike
    boundary: float | None = None
    offload: str = "auto"

    def __post_init__(self) -> None:
        if self.boundary is not None:
            check_number(self.boundary, "boundary")
        if self.offload not in OFFLOAD_MODES:
            raise InputError(f"Unknown offload mode {self.offload!r}; use one of {', '.join(OFFLOAD_MODES)}.")
        if self.boundary is not None and not 0.0 < float(self.boundary) <= 1.0:
            raise InputError(
                f"The expert boundary is a fraction of the timestep range in (0, 1], e.g. 0.875; got "
                f"{self.boundary}. Divide a 0..1000 timestep by 1000."
            )

    def switch_timestep(self) -> float:
        """The boundary on the 0..1000 timestep scale: steps with t >= it use the high-noise expert."""
        fraction = self.boundary if self.boundary is not None else official_boundary(self.low.config.task)
        return float(fraction) * 1000.0

    def high_noise_steps(self, timesteps: torch.Tensor) -> list[bool]:
        """Per step of a schedule: whether the high-noise expert runs it (t >= the switch timestep)."""
        switch = self.switch_timestep()
        return [float(t) >= switch for t in timesteps.tolist()]


def same_device(a: torch.device | None, b: torch.device | None) -> bool:
    """Device equality that treats "cuda" and "cuda:0" (an unset index) as the same device."""
    if a is None or b is None:
        return a is b
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _bytes(model: DiTLike) -> int:
    return module_bytes(model) if isinstance(model, torch.nn.Module) else 0


class Residency:
    """Keeps the active expert on the compute device, offloading the others when needed."""

    def __init__(
        self,
        models: list[DiTLike],
        device: torch.device,
        mode: str = "never",
        offload_device: torch.device | str = "cpu",
    ) -> None:
        self.models = models
        self.device = torch.device(device)
        self.mode = mode
        self.offload_device = torch.device(offload_device)

    def activate(self, model: DiTLike) -> None:
        """Make ``model`` resident on the compute device."""
        here = model.device
        others = [m for m in self.models if m is not model]
        if (
            self.mode != "never"
            and not same_device(self.device, self.offload_device)
            and self._must_offload(model, here)
        ):
            for other in others:
                if same_device(other.device, self.device):
                    log.info("Moving the inactive expert to %s before loading the next one.", self.offload_device)
                    other.to(self.offload_device)
            empty_cache(self.device)
        if not same_device(here, self.device):
            model.to(self.device)

    def _must_offload(self, model: DiTLike, here: torch.device) -> bool:
        if self.mode == "always":
            return True
        if same_device(here, self.device):
            return False
        free = free_memory(self.device)
        if free is None:
            return False
        return free < _bytes(model) * (1.0 + _HEADROOM)
