"""Fun-Camera conditioning (VideoX-Fun's layout; ComfyUI's WanCameraImageToVideo builds the same).

* Wan2.1 Fun Control Camera (extra channels C): ``y`` = the start frames' latent at the start of
  time, zeros elsewhere (normalised space); CLIP features of the start image are optional.
* Wan2.2 Fun camera (extra channels C + 4): ``y = [mask 4 | latent C]``, the I2V construction.

Both carry ``camera`` = the Plücker embedding ``[1, 24, T, H, W]`` of the trajectory
(:mod:`.camera`), added to the patch embedding by the model's camera adapter.
"""

from __future__ import annotations

import torch

from ..errors import ConditioningError
from .camera import CameraTrajectory, camera_embedding
from .i2v import _clip_batch, anchored_conditioning
from .image import ResizeMode, check_images, resize_signed, to_signed_chw
from .latents import (
    VideoVAE,
    checked_geometry,
    encode_frames,
    latent_frames,
    place_in_time,
    usable_frames,
)
from .types import Conditioning


def _start_frames(images: torch.Tensor, frames: int, width: int, height: int, resize: ResizeMode) -> torch.Tensor:
    """IMAGE [N, H, W, 3] -> [N', 3, height, width] in [-1, 1] (N' <= frames)."""
    return resize_signed(to_signed_chw(check_images(images, "start_image")), width, height, resize)[:frames]


def _latent_y(vae: VideoVAE, start: torch.Tensor | None, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """Wan2.1 layout: the start frames (cut to 4n+1) encoded alone, placed at latent frame 0, zeros after."""
    z_dim, total, h, w = shape
    if start is None:
        return torch.zeros(1, z_dim, total, h, w)
    return place_in_time(encode_frames(vae, start[: usable_frames(start.shape[0])]), total)


def fun_camera_conditioning(
    vae: VideoVAE,
    trajectory: CameraTrajectory,
    frames: int,
    width: int,
    height: int,
    start_image: torch.Tensor | None = None,
    clip_fea: torch.Tensor | None = None,
    model_extra_channels: int | None = None,
    resize: ResizeMode = "official",
) -> Conditioning:
    """Fun-Camera: a camera ``trajectory`` (fitted to ``frames``) plus optional start frames.

    ``start_image``: IMAGE [N, H, W, 3]; its N frames start the video (N = 1: a start image; more:
    a continuation). ``model_extra_channels``: the DiT's ``extra_channels`` (C for Wan2.1, C + 4 for
    Wan2.2); None = the Wan2.1 layout. ``clip_fea``: [1, 257, 1280] (Wan2.1, optional).
    """
    z_dim, stride, frames, width, height = checked_geometry(vae, frames, width, height)
    extra = z_dim if model_extra_channels is None else int(model_extra_channels)
    if extra not in (z_dim, z_dim + 4):
        raise ConditioningError(
            f"a Fun-Camera model takes {z_dim} (Wan2.1) or {z_dim + 4} (Wan2.2) extra channels with this "
            f"{z_dim}-channel VAE, got {extra}: connect the camera model to the conditioning node"
        )
    start = None if start_image is None else _start_frames(start_image, frames, width, height, resize)
    shape = (z_dim, latent_frames(frames), height // stride, width // stride)
    if extra == z_dim + 4:
        anchors = {} if start is None else dict(enumerate(start))
        cond = anchored_conditioning(vae, anchors, frames, width, height, clip_fea)
    else:
        cond = Conditioning(latent_shape=shape, y=_latent_y(vae, start, shape), clip_fea=_clip_batch(clip_fea))
    return cond.with_(camera=camera_embedding(trajectory, frames, width, height))
