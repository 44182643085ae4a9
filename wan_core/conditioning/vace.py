"""VACE conditioning (spec 8.4): inactive/reactive latents, the 8x8-unshuffled mask, reference images.

``vace_context [1, 96, T + n_ref, h, w]`` = inactive latent 16 | reactive latent 16 |
mask 64. Reference images are prepended in time (their 32-channel entry is
``[ref_latent, 0]`` and their mask frames are 0); the noise latent gets the same
``T + n_ref`` frames and the sampler drops the first ``n_ref`` before decoding
(``Conditioning.trim_latent_frames``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F

from ..errors import ConditioningError, InputError
from .image import check_images, paste_on_white, to_signed_chw
from .latents import VideoVAE, checked_geometry, encode_frames, encode_video, latent_frames
from .types import Conditioning, VaceHint

log = logging.getLogger(__name__)

VACE_LATENT_CHANNELS = 16


def _fit_length(x: torch.Tensor, frames: int, fill: float, name: str) -> torch.Tensor:
    """Cut ``[N, ...]`` to ``frames`` along dim 0, or pad the end with ``fill`` (logged)."""
    if x.shape[0] > frames:
        return x[:frames]
    if x.shape[0] < frames:
        log.warning("%s has %d frames, the video %d: the missing frames are generated freely", name, x.shape[0], frames)
        pad = x.new_full((frames - x.shape[0], *x.shape[1:]), fill)
        return torch.cat([x, pad], dim=0)
    return x


def _source_video(control_video: torch.Tensor | None, frames: int, width: int, height: int) -> torch.Tensor:
    """Control frames -> ``[F, 3, H, W]`` in [-1, 1]; zeros (grey) where nothing is given."""
    if control_video is None:
        return torch.zeros(frames, 3, height, width)
    video = to_signed_chw(check_images(control_video, "control_video"))
    if tuple(video.shape[-2:]) != (height, width):
        video = F.interpolate(video, size=(height, width), mode="bilinear", align_corners=False)
    return _fit_length(video, frames, 0.0, "control_video")


def _source_mask(control_mask: torch.Tensor | None, frames: int, width: int, height: int, device) -> torch.Tensor:
    """MASK ``[N, H, W]`` (1 = generate) -> binary ``[F, H, W]`` (threshold 0.5); ones when not given."""
    if control_mask is None:
        return torch.ones(frames, height, width, device=device)
    mask = control_mask.float().to(device)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim == 4:  # an IMAGE used as a mask: first channel
        mask = mask[..., 0]
    if tuple(mask.shape[-2:]) != (height, width):
        mask = F.interpolate(mask[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    if mask.shape[0] == 1 and frames > 1:
        mask = mask.expand(frames, height, width)
    mask = _fit_length(mask, frames, 1.0, "control_mask")
    return (mask > 0.5).float()


def mask_latent(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """Binary ``[F, H, W]`` -> ``[1, stride^2, T, H / stride, W / stride]``, channel = row_offset * stride + col_offset.

    Each stride x stride pixel block becomes stride^2 channels; time is resampled
    to ``T = (F + 3) // 4`` with nearest-exact interpolation.
    """
    frames, height, width = mask.shape
    h, w = height // stride, width // stride
    blocks = mask.reshape(frames, h, stride, w, stride).permute(2, 4, 0, 1, 3)  # [s, s, F, h, w]
    blocks = blocks.reshape(1, stride * stride, frames, h, w)
    return F.interpolate(blocks, size=((frames + 3) // 4, h, w), mode="nearest-exact")


def _reference_latents(
    vae: VideoVAE, reference_images: torch.Tensor | Sequence[torch.Tensor], width: int, height: int
) -> torch.Tensor:
    """Each reference -> ``[1, 32, 1, h, w]`` = ``[its latent | zeros]``; concatenated in time -> ``[1, 32, n, h, w]``.

    ``reference_images``: one IMAGE batch, or a list of images of different sizes (each is fitted on its own).
    """
    batches = [reference_images] if isinstance(reference_images, torch.Tensor) else list(reference_images)
    refs = [ref for batch in batches for ref in to_signed_chw(check_images(batch, "reference_images"))]
    latents = []
    for ref in refs:
        latent = encode_video(vae, paste_on_white(ref, width, height)[None, :, None])  # [1, 16, 1, h, w]
        latents.append(torch.cat([latent, torch.zeros_like(latent)], dim=1))
    return torch.cat(latents, dim=2)


def vace_conditioning(
    vae: VideoVAE,
    frames: int,
    width: int,
    height: int,
    control_video: torch.Tensor | None = None,
    control_mask: torch.Tensor | None = None,
    reference_images: torch.Tensor | Sequence[torch.Tensor] | None = None,
    strength: float = 1.0,
    start: float = 0.0,
    end: float = 1.0,
) -> Conditioning:
    """One VACE input: ``control_video`` IMAGE [N, H, W, 3], ``control_mask`` MASK [N, H, W] (1 = generate),
    ``reference_images`` IMAGE [n_ref, H, W, 3]; active for sampling progress in [start, end).

    Returns a Conditioning with latent_shape ``(16, T + n_ref, h, w)``, one VaceHint
    and ``trim_latent_frames = n_ref``.
    """
    z_dim, stride, frames, width, height = checked_geometry(vae, frames, width, height, VACE_LATENT_CHANNELS, "VACE")
    if not 0.0 <= start <= end:
        raise InputError(f"VACE start {start} / end {end}: need 0 <= start <= end <= 1 (fractions of the steps)")
    video = _source_video(control_video, frames, width, height)
    mask = _source_mask(control_mask, frames, width, height, video.device)
    keep = mask[:, None]  # [F, 1, H, W]
    inactive, reactive = encode_frames(vae, video * (1 - keep)), encode_frames(vae, video * keep)
    latents = torch.cat([inactive, reactive], dim=1)  # [1, 32, T, h, w]
    masks = mask_latent(mask.to(latents.device), stride)
    n_ref = 0
    if reference_images is not None:
        refs = _reference_latents(vae, reference_images, width, height).to(latents.device)
        n_ref = refs.shape[2]
        latents = torch.cat([refs, latents], dim=2)
        masks = torch.cat([masks.new_zeros(*masks.shape[:2], n_ref, *masks.shape[3:]), masks], dim=2)
    context = torch.cat([latents, masks], dim=1)  # [1, 96, T + n_ref, h, w]
    hint = VaceHint(context=context, strength=float(strength), start=float(start), end=float(end))
    shape = (z_dim, latent_frames(frames) + n_ref, height // stride, width // stride)
    return Conditioning(latent_shape=shape, vace=(hint,), trim_latent_frames=n_ref)


def _pad_front(hint: VaceHint, count: int) -> VaceHint:
    """Prepend ``count`` all-zero latent frames (no content, mask 0) to a VACE context."""
    if count == 0:
        return hint
    ctx = hint.context
    pad = ctx.new_zeros(ctx.shape[0], ctx.shape[1], count, *ctx.shape[3:])
    return replace(hint, context=torch.cat([pad, ctx], dim=2))


def combine_vace(a: Conditioning, b: Conditioning) -> Conditioning:
    """Several VACE inputs on one video, each keeping its own strength and step range.

    If only one side has reference images, the other's contexts get zero frames
    prepended so that all contexts cover the same ``T + n_ref`` latent frames.
    """
    if not a.vace or not b.vace:
        raise InputError("combine_vace: both inputs must come from vace_conditioning (one has no VACE input)")
    (ca, ta, ha, wa), (cb, tb, hb, wb) = a.latent_shape, b.latent_shape
    na, nb = a.trim_latent_frames, b.trim_latent_frames
    if (ca, ha, wa, ta - na) != (cb, hb, wb, tb - nb):
        raise ConditioningError(
            f"combine_vace: the VACE inputs describe different videos (latent {a.latent_shape} with {na} "
            f"references vs {b.latent_shape} with {nb}): build both with the same frames, width and height"
        )
    n = max(na, nb)
    hints = tuple(_pad_front(h, n - na) for h in a.vace) + tuple(_pad_front(h, n - nb) for h in b.vace)
    base = a if na >= nb else b
    return base.with_(vace=hints)
