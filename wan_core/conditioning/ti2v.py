"""Wan2.2 TI2V-5B conditioning (spec 8.3): text-to-video, or text+image with a first-frame lock.

With an image, its single-frame latent ``z [1, 48, 1, h, w]`` replaces latent frame 0
before sampling and after every step, and the tokens of latent frame 0 get
timestep 0. The builder only describes this as a :class:`FrameLock`; the sampler
applies it (``FrameLock.apply`` / ``FrameLock.token_timesteps``).
"""

from __future__ import annotations

import torch

from .image import check_images, lanczos_cover_crop
from .latents import VideoVAE, checked_geometry, encode_video, latent_frames, place_in_time
from .types import Conditioning, FrameLock

TI2V_LATENT_CHANNELS = 48


def ti2v_conditioning(vae: VideoVAE, image: torch.Tensor | None, frames: int, width: int, height: int) -> Conditioning:
    """TI2V-5B: latent ``(48, T, H / 16, W / 16)``; with ``image`` ([N, H, W, 3], first used) a FrameLock on frame 0.

    The image is LANCZOS-resized to cover (width, height) and center-cropped,
    as the official code does (use :func:`image.best_output_size` to pick a size
    from the image's aspect like the official CLI).
    """
    z_dim, stride, frames, width, height = checked_geometry(vae, frames, width, height, TI2V_LATENT_CHANNELS, "TI2V-5B")
    shape = (z_dim, latent_frames(frames), height // stride, width // stride)
    if image is None:
        return Conditioning(latent_shape=shape)
    pixels = lanczos_cover_crop(check_images(image, "image")[0], width, height)  # [3, H, W] in [-1, 1]
    first = encode_video(vae, pixels[None, :, None])  # [1, 48, 1, h, w]
    mask = torch.ones(1, 1, shape[1], 1, 1, device=first.device)
    mask[:, :, 0] = 0.0
    lock = FrameLock(latent=place_in_time(first, shape[1]), mask=mask)
    return Conditioning(latent_shape=shape, frame_lock=lock)
