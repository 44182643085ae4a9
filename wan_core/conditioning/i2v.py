"""T2V, I2V, FLF2V and Fun-InP conditioning (spec 8.1, 8.2, 8.5).

I2V-style conditioning ``y = [mask 4 | condition latent C]``: the condition video
holds the given images at their pixel frames and zeros (mid-grey in [-1, 1])
elsewhere; it is VAE-encoded as one video. The mask marks the latent channels whose
pixel frame was given (see :func:`latents.pixel_to_latent_mask`).
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..validation import check_size_multiple
from .image import ResizeMode, check_images, resize_signed, to_signed_chw
from .latents import PATCH, VideoVAE, anchor_mask, checked_geometry, encode_video, latent_frames, vae_device_dtype
from .types import Conditioning
from .validate import check_frames


def t2v_conditioning(latent_channels: int, frames: int, width: int, height: int, spatial_stride: int) -> Conditioning:
    """Text-to-video: only the latent shape ``(C, T, H / stride, W / stride)``."""
    frames = check_frames(frames)
    width, height = check_size_multiple(width, height, spatial_stride * PATCH)
    return Conditioning(
        latent_shape=(latent_channels, latent_frames(frames), height // spatial_stride, width // spatial_stride)
    )


def _prepare(images: torch.Tensor, name: str, width: int, height: int, resize: ResizeMode) -> torch.Tensor:
    """IMAGE ``[N, H, W, 3]`` 0..1 -> ``[N, 3, height, width]`` in [-1, 1] (spec 8.1 step 1 and 3)."""
    return resize_signed(to_signed_chw(check_images(images, name)), width, height, resize)


def anchored_conditioning(
    vae: VideoVAE,
    anchors: dict[int, torch.Tensor],
    frames: int,
    width: int,
    height: int,
    clip_fea: torch.Tensor | None = None,
) -> Conditioning:
    """I2V-style conditioning from pixel frames given at fixed indices.

    ``anchors``: pixel frame index -> ``[3, height, width]`` in [-1, 1]. Returns
    ``y [1, 4 + C, T, h, w]`` = mask (1 on the latent channels of given frames) and
    the normalised latent of the condition video (zeros on the other frames).
    """
    z_dim, stride, frames, width, height = checked_geometry(vae, frames, width, height)
    device, dtype = vae_device_dtype(vae, torch.zeros(()))
    video = torch.zeros(1, 3, frames, height, width, device=device, dtype=dtype)  # built where the VAE runs
    for index, frame in anchors.items():
        video[0, :, index] = frame.to(device=device, dtype=dtype)
    latent = encode_video(vae, video)
    mask = anchor_mask(frames, anchors.keys(), height // stride, width // stride, device=latent.device)
    y = torch.cat([mask, latent], dim=1)
    t, h, w = latent.shape[2:]
    return Conditioning(latent_shape=(z_dim, t, h, w), y=y, clip_fea=_clip_batch(clip_fea))


def _clip_batch(clip_fea: torch.Tensor | None) -> torch.Tensor | None:
    """CLIP features ``[N, tokens, width]`` (N images) -> ``[1, N * tokens, width]`` (token-axis concat)."""
    if clip_fea is None:
        return None
    if clip_fea.ndim == 2:
        clip_fea = clip_fea[None]
    if clip_fea.ndim != 3:
        raise InputError(f"clip_fea: expected [N, tokens, width] CLIP features, got shape {tuple(clip_fea.shape)}")
    return clip_fea.reshape(1, -1, clip_fea.shape[-1]).float()


def i2v_conditioning(
    vae: VideoVAE,
    image: torch.Tensor,
    frames: int,
    width: int,
    height: int,
    clip_fea: torch.Tensor | None = None,
    resize: ResizeMode = "official",
) -> Conditioning:
    """Image-to-video (Wan2.1 I2V with ``clip_fea``, Wan2.2 I2V-A14B without), spec 8.1.

    ``image``: IMAGE ``[N, H, W, 3]``; its N frames become pixel frames 0..N-1 (N = 1
    is the official single start image). ``clip_fea``: ``[1, 257, 1280]``.
    """
    frames = check_frames(frames)
    images = _prepare(image, "image", width, height, resize)[:frames]
    anchors = {i: frame for i, frame in enumerate(images)}
    return anchored_conditioning(vae, anchors, frames, width, height, clip_fea)


def _fit_last(first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Official FLF2V: a last frame of another size is first center-cropped and resized to the first's size."""
    h, w = first.shape[-2:]
    return resize_signed(last, w, h, "crop")


def flf2v_conditioning(
    vae: VideoVAE,
    first: torch.Tensor,
    last: torch.Tensor,
    frames: int,
    width: int,
    height: int,
    clip_fea: torch.Tensor | None = None,
    resize: ResizeMode = "official",
) -> Conditioning:
    """First-last-frame-to-video (spec 8.2): frames 0 and F-1 given; last latent frame's mask = [0, 0, 0, 1].

    ``clip_fea``: both images' CLIP features, ``[2, 257, 1280]`` or ``[1, 514, 1280]``.
    """
    frames = check_frames(frames)
    if frames < 2:
        raise InputError(f"first-last-frame video needs at least 5 frames, got {frames}: use 5 or more (4n+1)")
    first_s = to_signed_chw(check_images(first, "first"))[:1]
    last_s = _fit_last(first_s, to_signed_chw(check_images(last, "last"))[-1:])
    first_s = resize_signed(first_s, width, height, resize)[0]
    last_s = resize_signed(last_s, width, height, resize)[0]
    return anchored_conditioning(vae, {0: first_s, frames - 1: last_s}, frames, width, height, clip_fea)


def fun_inp_conditioning(
    vae: VideoVAE,
    start_image: torch.Tensor | None = None,
    end_image: torch.Tensor | None = None,
    frames: int = 81,
    width: int = 832,
    height: int = 480,
    clip_fea: torch.Tensor | None = None,
    resize: ResizeMode = "official",
) -> Conditioning:
    """Wan2.1 Fun-InP (spec 8.5): the I2V/FLF2V construction with an optional start and/or end image.

    With neither image the mask is all zero and the condition latent is that of a grey video.
    """
    frames = check_frames(frames)
    anchors: dict[int, torch.Tensor] = {}
    if start_image is not None:
        anchors.update(enumerate(_prepare(start_image, "start_image", width, height, resize)[:frames]))
    if end_image is not None:
        end = _prepare(end_image, "end_image", width, height, resize)
        end = end[-min(frames, end.shape[0]) :]
        first_index = frames - end.shape[0]
        anchors.update({first_index + i: frame for i, frame in enumerate(end)})
    return anchored_conditioning(vae, anchors, frames, width, height, clip_fea)
