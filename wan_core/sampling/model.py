"""What the sampler needs from a DiT: a typed contract instead of attribute probing.

:class:`~wan_core.dit.model.WanDiT` satisfies it; tests pass small fakes that do too.
Every member is required: the sampler reads the task (official expert boundary), the
output channels (checked against the latent), the patch size (TI2V per-token
timesteps), the device (where sampling runs by default) and moves experts with ``to``.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class DiTConfigLike(Protocol):
    """The fields of :class:`~wan_core.dit.config.DiTConfig` the sampler reads."""

    @property
    def task(self) -> str: ...

    @property
    def out_dim(self) -> int: ...

    @property
    def patch_size(self) -> tuple[int, int, int]: ...


class DiTLike(Protocol):
    """A DiT the sampler can run: ``model(x, t, context, **extras) -> velocity``.

    x [B, C, T, h, w]; t [B] or per-token [B, S] on the 0..1000 scale; context one
    [L_i, D] tensor per batch element; extras ``y`` / ``clip_fea`` / ``vace_context`` /
    ``vace_scale`` (see :func:`wan_core.sampling.guidance.conditioning_extras`).
    Returns the velocity [B, out_dim, T, h, w].
    """

    @property
    def config(self) -> DiTConfigLike: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def __call__(
        self, x: torch.Tensor, t: torch.Tensor, context: list[torch.Tensor], **extras: Any
    ) -> torch.Tensor: ...

    def to(self, device: torch.device) -> Any: ...
