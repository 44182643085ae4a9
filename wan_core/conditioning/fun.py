"""Fun-Control conditioning (spec 8.5; ComfyUI's layout, no official code exists).

Wan2.1 Fun-Control (in_dim 48, 2C = 32 extra channels): ``y = [control latent C | start-image latent C]``.
Wan2.2 Fun-Control (2C + 4 = 36 extra channels): ``y = [control C | mask 4 | start-image C]``.
Missing parts are zeros in normalised latent space. The start image is encoded on its
own (one latent frame) and placed at latent frame 0.
"""

from __future__ import annotations

import torch

from ..errors import ConditioningError, InputError
from .i2v import _clip_batch
from .image import check_images, resize_signed, to_signed_chw
from .latents import VideoVAE, anchor_mask, checked_geometry, encode_frames, latent_frames, place_in_time, usable_frames
from .types import Conditioning


def _control_latent(vae: VideoVAE, control_video: torch.Tensor, frames: int, width: int, height: int) -> torch.Tensor:
    """Control frames (cut to the video, then to the largest 4n+1 count) -> latent ``[1, C, t, h, w]``."""
    video = to_signed_chw(check_images(control_video, "control_video"))[:frames]
    video = resize_signed(video[: usable_frames(video.shape[0])], width, height, "crop")
    return encode_frames(vae, video)


def _start_latent(vae: VideoVAE, start_image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """First image -> its single-frame latent ``[1, C, 1, h, w]``."""
    image = resize_signed(to_signed_chw(check_images(start_image, "start_image"))[:1], width, height, "crop")
    return encode_frames(vae, image)


def fun_control_conditioning(
    vae: VideoVAE,
    control_video: torch.Tensor,
    frames: int,
    width: int,
    height: int,
    start_image: torch.Tensor | None = None,
    clip_fea: torch.Tensor | None = None,
    model_extra_channels: int = 32,
) -> Conditioning:
    """Fun-Control: ``control_video`` IMAGE [N, H, W, 3] (already preprocessed: depth, canny, pose ...).

    ``model_extra_channels`` is the DiT's ``extra_channels``: 2C (Wan2.1, 32) or 2C + 4
    (Wan2.2, 36, which adds the I2V mask of the start image). Images are center-cropped
    and resized bicubically to (width, height).
    """
    z_dim, stride, frames, width, height = checked_geometry(vae, frames, width, height)
    if model_extra_channels not in (2 * z_dim, 2 * z_dim + 4):
        raise ConditioningError(
            f"a Fun-Control model takes {2 * z_dim} or {2 * z_dim + 4} extra channels with this {z_dim}-channel VAE, "
            f"got model_extra_channels={model_extra_channels}: pass the DiT's config.extra_channels, and use the "
            f"VAE that matches the model"
        )
    if control_video is None:
        raise InputError("fun_control_conditioning needs a control_video (IMAGE batch)")
    total = latent_frames(frames)
    h, w = height // stride, width // stride
    control = place_in_time(_control_latent(vae, control_video, frames, width, height), total)
    start = control.new_zeros(1, z_dim, total, h, w)
    if start_image is not None:
        start = place_in_time(_start_latent(vae, start_image, width, height).to(control.device), total)
    parts = [control, start]
    if model_extra_channels == 2 * z_dim + 4:
        anchors = [0] if start_image is not None else []
        parts.insert(1, anchor_mask(frames, anchors, h, w, device=control.device))
    y = torch.cat(parts, dim=1)
    return Conditioning(latent_shape=(z_dim, total, h, w), y=y, clip_fea=_clip_batch(clip_fea))
