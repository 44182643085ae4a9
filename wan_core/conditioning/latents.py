"""Latent geometry, VAE encoding at the conditioning boundary and the I2V-style latent masks.

Frame rule of both Wan VAEs (spec 7.5): ``T = (F - 1) // 4 + 1`` latent frames for
``F = 4n + 1`` pixel frames; latent height/width = pixel / ``spatial_stride``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import torch

from ..errors import ConditioningError, InputError
from ..validation import check_size_multiple
from .validate import VAE_FILES, VAE_NAMES, check_frames

TEMPORAL_STRIDE = 4
PATCH = 2  # the DiT patchifies 2x2 in space, so pixel sizes are multiples of stride * PATCH


class VideoVAE(Protocol):
    """What the builders use of a VAE: a loaded WanVAE or a stand-in.

    ``config`` has ``z_dim`` and ``spatial_stride``; ``encode`` maps a video
    [B, 3, F, H, W] in [-1, 1] to its normalised latent [B, z_dim, T, H / s, W / s].
    """

    config: Any

    def encode(self, video: torch.Tensor) -> torch.Tensor: ...


def latent_frames(frames: int) -> int:
    """Latent frames T for F pixel frames: ``(F - 1) // 4 + 1``."""
    return (frames - 1) // TEMPORAL_STRIDE + 1


def vae_geometry(vae: VideoVAE) -> tuple[int, int]:
    """(z_dim, spatial_stride) of a VAE, read from ``vae.config``."""
    config = getattr(vae, "config", None)
    if config is None:
        raise InputError(
            f"expected a loaded Wan VAE with a .config, got {type(vae).__name__}: pass the VAE returned by "
            "load_vae (the Wan VAE loader node)"
        )
    return int(config.z_dim), int(config.spatial_stride)


def checked_geometry(
    vae: VideoVAE, frames: int, width: int, height: int, latent_channels: int | None = None, model: str = "this model"
) -> tuple[int, int, int, int, int]:
    """``(z_dim, spatial_stride, frames, width, height)`` of a video to build, checked before any encoding.

    ``latent_channels``: the VAE family the builder needs (16 Wan2.1, 48 Wan2.2); it is
    checked first, because a wrong VAE also changes the size rule (multiples of stride x 2).
    """
    z_dim, stride = vae_geometry(vae)
    if latent_channels is not None and z_dim != latent_channels:
        raise ConditioningError(
            f"{model} needs the {VAE_NAMES[latent_channels]} ({latent_channels} latent channels) but the VAE has "
            f"{z_dim}: load {VAE_FILES[latent_channels]}"
        )
    frames = check_frames(frames)
    width, height = check_size_multiple(width, height, stride * PATCH)
    return z_dim, stride, frames, width, height


def vae_device_dtype(vae: VideoVAE, fallback: torch.Tensor) -> tuple[torch.device, torch.dtype]:
    """Where the VAE's weights live, so the pixel video goes there once; else the input's own."""
    device = getattr(vae, "device", None)
    dtype = getattr(vae, "dtype", None)
    if (device is None or dtype is None) and isinstance(vae, torch.nn.Module):
        param = next(iter(vae.parameters()), None)
        if param is not None:
            device, dtype = param.device, param.dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        dtype = fallback.dtype
    return torch.device(device) if device is not None else fallback.device, dtype


def encode_video(vae: VideoVAE, video: torch.Tensor) -> torch.Tensor:
    """VAE-encode ``[1, 3, F, H, W]`` in [-1, 1] -> NORMALISED latent ``[1, z, T, h, w]`` in float32."""
    device, dtype = vae_device_dtype(vae, video)
    with torch.no_grad():
        latent = vae.encode(video.to(device=device, dtype=dtype))
    return latent.float()


def usable_frames(count: int) -> int:
    """The largest 4n+1 frame count <= ``count``: what the causal VAE encodes of a clip."""
    return (count - 1) // TEMPORAL_STRIDE * TEMPORAL_STRIDE + 1


def encode_frames(vae: VideoVAE, frames: torch.Tensor) -> torch.Tensor:
    """Frames ``[N, 3, H, W]`` in [-1, 1] (N = 4n+1) -> NORMALISED latent ``[1, z, T, h, w]`` in float32."""
    return encode_video(vae, frames.permute(1, 0, 2, 3)[None])


def pixel_to_latent_mask(known: torch.Tensor) -> torch.Tensor:
    """Official I2V/FLF2V mask layout: pixel-frame mask ``[F, h, w]`` -> latent mask ``[4, T, h, w]``.

    Frame 0 is repeated 4 times (F + 3 = 4T frames), then every group of 4
    consecutive frames becomes the 4 channels of one latent frame: channel c of
    latent frame t >= 1 holds pixel frame 4t + c - 3; latent frame 0 holds frame 0
    four times.
    """
    frames, h, w = known.shape
    if (frames - 1) % TEMPORAL_STRIDE:
        raise InputError(f"mask has {frames} frames; expected 4n+1")
    padded = torch.cat([known[:1].expand(TEMPORAL_STRIDE - 1, h, w), known], dim=0)  # [4T, h, w]
    return padded.reshape(-1, TEMPORAL_STRIDE, h, w).transpose(0, 1).contiguous()


def anchor_mask(
    frames: int, anchors: Iterable[int], h: int, w: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Latent mask ``[1, 4, T, h, w]``: 1 where a pixel frame index in ``anchors`` is given, else 0."""
    known = torch.zeros(frames, h, w, device=device)
    for index in anchors:
        known[index] = 1.0
    return pixel_to_latent_mask(known)[None]


def place_in_time(latent: torch.Tensor, total: int) -> torch.Tensor:
    """Put a ``[1, C, t, h, w]`` latent at the start of ``total`` frames; the rest are 0 (normalised)."""
    out = latent.new_zeros(latent.shape[0], latent.shape[1], total, *latent.shape[-2:])
    keep = min(total, latent.shape[2])
    out[:, :, :keep] = latent[:, :, :keep]
    return out
