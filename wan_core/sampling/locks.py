"""The TI2V first-frame lock (spec 8.3): replace locked latent frames, and per-token timesteps."""

from __future__ import annotations

import torch

from ..conditioning.types import FrameLock


def apply_lock(lock: FrameLock | None, x: torch.Tensor) -> torch.Tensor:
    """x = (1 − mask)·latent + mask·x for x [B, C, T, h, w]; locked frames become exactly ``latent``."""
    if lock is None:
        return x
    mask = lock.mask.to(device=x.device, dtype=x.dtype)
    return (1.0 - mask) * lock.latent.to(device=x.device, dtype=x.dtype) + mask * x


def lock_token_mask(lock: FrameLock, latent_shape: tuple[int, ...], patch: tuple[int, int, int]) -> torch.Tensor:
    """Mask value per DiT token [T/pt · h/ph · w/pw] fp32: 0 on locked frames, 1 elsewhere.

    As the official TI2V code: the mask [T, h, w] of the first channel, sampled at the first
    element of every patch (``[::pt, ::ph, ::pw]``), flattened in (t, h, w) order.
    """
    _, frames, h, w = latent_shape
    mask = lock.mask.to(torch.float32)
    while mask.ndim < 5:
        mask = mask[None]
    grid = torch.broadcast_to(mask, (*mask.shape[:2], frames, h, w))[0, 0]
    return grid[:: patch[0], :: patch[1], :: patch[2]].reshape(-1).contiguous()
