"""The conditioning a sampling call carries besides the text: shared by builders, sampler and nodes.

All latents here are NORMALISED (wan_core convention), shaped [B, C, T, h, w]
with B = 1 (broadcast over the batch of seeds / the cond-uncond pair).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch


@dataclass(frozen=True)
class VaceHint:
    """One VACE input. context: [1, 96, T, h, w] (inactive 16 | reactive 16 | mask 64).

    ``strength`` scales its hints; it is active while the sampling progress
    (step / steps, 0..1) lies in [start, end).
    """

    context: torch.Tensor
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0

    def active(self, progress: float) -> bool:
        return self.start <= progress < self.end or (self.end >= 1.0 and progress >= 1.0)


@dataclass(frozen=True)
class FrameLock:
    """Latent frames kept fixed during sampling (TI2V-5B first frame).

    latent: [1, C, T, h, w] normalised values to keep; mask: [1, 1, T, 1, 1] (or
    broadcastable), 1 where the sampler generates, 0 where ``latent`` is imposed.
    After every step ``x = (1 - mask) * latent + mask * x``; tokens under mask 0
    get timestep 0 (per-token timesteps, spec 8.3).
    """

    latent: torch.Tensor
    mask: torch.Tensor

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``(1 - mask) * latent + mask * x`` for x ``[B, C, T, h, w]`` (on x's device and dtype)."""
        mask = self.mask.to(device=x.device, dtype=x.dtype)
        return (1 - mask) * self.latent.to(device=x.device, dtype=x.dtype) + mask * x

    def token_mask(
        self, grid: tuple[int, int, int] | None = None, patch_size: tuple[int, int, int] = (1, 2, 2)
    ) -> torch.Tensor:
        """Mask value per DiT token ``[T/pt * h/ph * w/pw]`` fp32: 0 on locked frames, 1 elsewhere.

        As the official TI2V code: the mask over the latent grid ``(T, h, w)`` (default: the
        lock latent's), sampled at the first element of every patch, flattened in (t, h, w) order.
        """
        frames, h, w = grid if grid is not None else tuple(self.latent.shape[2:])
        mask = self.mask.to(torch.float32)
        while mask.ndim < 5:
            mask = mask[None]
        full = torch.broadcast_to(mask, (*mask.shape[:2], frames, h, w))[0, 0]
        return full[:: patch_size[0], :: patch_size[1], :: patch_size[2]].reshape(-1).contiguous()

    def token_timesteps(self, t: torch.Tensor, patch_size: tuple[int, int, int] = (1, 2, 2)) -> torch.Tensor:
        """Per-token timesteps ``[B, T/pt * h/ph * w/pw]`` = t times the mask at each patch (spec 8.3).

        ``t``: ``[B]`` (or a scalar); tokens of locked frames get 0, all others t.
        """
        t = torch.as_tensor(t).reshape(-1)
        return t.float()[:, None] * self.token_mask(patch_size=patch_size).to(t.device)[None]


@dataclass(frozen=True)
class Conditioning:
    """Everything a DiT call needs besides x, t and the text context.

    * ``latent_shape``: (C, T, h, w) of the noise latent to sample.
    * ``y``: extra input channels concatenated after x ([1, C_extra, T, h, w]), or None.
    * ``clip_fea``: [1, 257|514, 1280] CLIP-H tokens (Wan2.1 I2V/FLF2V/Fun), or None.
    * ``vace``: VACE inputs, each with its own strength and step range.
    * ``frame_lock``: TI2V first-frame replacement, or None.
    * ``trim_latent_frames``: leading latent frames to drop after sampling (VACE references).
    * ``init_latent``: a normalised latent to start from when denoise < 1 (V2V), or None.
    * ``camera``: [1, 24, T, H, W] Plücker rays at pixel size for Fun-camera models, or None.
    """

    latent_shape: tuple[int, int, int, int]
    y: torch.Tensor | None = None
    clip_fea: torch.Tensor | None = None
    vace: tuple[VaceHint, ...] = field(default_factory=tuple)
    frame_lock: FrameLock | None = None
    trim_latent_frames: int = 0
    init_latent: torch.Tensor | None = None
    camera: torch.Tensor | None = None

    def with_(self, **changes: Any) -> Conditioning:
        return replace(self, **changes)

    def on(self, device: torch.device) -> Conditioning:
        """The per-step DiT inputs (y, clip_fea, camera, VACE contexts) on ``device``.

        Why: the sampler reads them at every step; moved once per run, a Fun-Camera run no
        longer copies its pixel-size camera rays (805 MB at 832x480x81) to the GPU every step.
        """

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        vace = tuple(replace(hint, context=hint.context.to(device)) for hint in self.vace)
        return replace(self, y=move(self.y), clip_fea=move(self.clip_fea), camera=move(self.camera), vace=vace)
