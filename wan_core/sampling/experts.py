"""Wan2.2 A14B: two experts in one sampling run, switched by timestep (spec 7.5).

At each step t >= boundary (0..1000 scale) uses the high-noise expert, else the low-noise one;
both share the text, conditioning and solver state. When the compute device cannot hold both,
the inactive expert waits on an offload device (CPU) so that only one is resident at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..devices import empty_cache, free_memory, module_bytes
from ..errors import InputError
from ..validation import check_cfg, check_number

log = logging.getLogger(__name__)

# A WanDiT or a stand-in: ``model(x, t, context, **extras) -> velocity``; ``.config`` / ``.device`` are
# read when present.
DiTLike = Callable[..., torch.Tensor]
OFFLOAD_MODES = ("auto", "always", "never")
OFFICIAL_BOUNDARIES = {"t2v": 875.0, "i2v": 900.0}
# Head-room kept free besides the incoming expert's weights (activations, allocator slack).
_HEADROOM = 0.10


@dataclass(frozen=True, eq=False)
class Experts:
    """The high-noise and low-noise DiTs of a Wan2.2 A14B model.

    ``boundary``: switch point on the 0..1000 timestep scale (values <= 1 are read as a ratio,
    e.g. 0.875); None takes the official value from ``low.config.task`` (875 T2V, 900 I2V).
    ``cfg_high`` / ``cfg_low`` override the settings' guidance for one expert.
    ``offload``: "auto" moves the inactive expert to the CPU only when free device memory is
    short, "always" keeps one expert resident, "never" leaves both where they are.
    """

    high: DiTLike
    low: DiTLike
    boundary: float | None = None
    cfg_high: float | None = None
    cfg_low: float | None = None
    offload: str = "auto"

    def __post_init__(self) -> None:
        for scale in (self.cfg_high, self.cfg_low):
            if scale is not None:
                check_cfg(scale)
        if self.boundary is not None:
            check_number(self.boundary, "boundary")
        if self.offload not in OFFLOAD_MODES:
            raise InputError(f"Unknown offload mode {self.offload!r}; use one of {', '.join(OFFLOAD_MODES)}.")

    def resolved_boundary(self) -> float:
        if self.boundary is not None:
            b = float(self.boundary)
            return b * 1000.0 if b <= 1.0 else b
        task = getattr(getattr(self.low, "config", None), "task", None)
        if task not in OFFICIAL_BOUNDARIES:
            raise InputError(
                f"No official expert boundary for task {task!r}; pass Experts(boundary=...) "
                "(875 for T2V, 900 for I2V on the 0..1000 scale)."
            )
        return OFFICIAL_BOUNDARIES[task]


def model_device(model: object) -> torch.device | None:
    """Where a DiT (or any module / fake with a ``device``) lives; None when unknown."""
    device = getattr(model, "device", None)
    if device is not None:
        return torch.device(device)
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return None


def same_device(a: torch.device | None, b: torch.device | None) -> bool:
    """Device equality that treats "cuda" and "cuda:0" (an unset index) as the same device."""
    if a is None or b is None:
        return a is b
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _bytes(model) -> int:
    return module_bytes(model) if isinstance(model, torch.nn.Module) else 0


class Residency:
    """Keeps the active expert on the compute device, offloading the others when needed."""

    def __init__(
        self, models: list, device: torch.device, mode: str = "never", offload_device: torch.device | str = "cpu"
    ) -> None:
        self.models = models
        self.device = torch.device(device)
        self.mode = mode
        self.offload_device = torch.device(offload_device)

    def activate(self, model: DiTLike) -> None:
        """Make ``model`` resident on the compute device."""
        here = model_device(model)
        others = [m for m in self.models if m is not model]
        if (
            self.mode != "never"
            and not same_device(self.device, self.offload_device)
            and self._must_offload(model, here)
        ):
            for other in others:
                if same_device(model_device(other), self.device):
                    log.info("Moving the inactive expert to %s before loading the next one.", self.offload_device)
                    other.to(self.offload_device)
            empty_cache(self.device)
        if here is not None and not same_device(here, self.device) and hasattr(model, "to"):
            model.to(self.device)

    def _must_offload(self, model, here: torch.device | None) -> bool:
        if self.mode == "always":
            return True
        if same_device(here, self.device):
            return False
        free = free_memory(self.device)
        if free is None:
            return False
        return free < _bytes(model) * (1.0 + _HEADROOM)
