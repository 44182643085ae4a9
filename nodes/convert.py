"""Conversions between ComfyUI's types and wan_core's, at the node boundary only.

* IMAGE: [N, H, W, 3] float 0..1 (frames of a video travel as one batch).
* MASK: [N, H, W] float 0..1.
* LATENT: ``{"samples": raw VAE mean [B, C, T, h, w]}``. ComfyUI's native Wan nodes carry
  the RAW mean and normalise inside the model; wan_core works on NORMALISED latents
  ((raw - mean) / std). :func:`latent_to_comfy` / :func:`latent_from_comfy` convert, so
  our LATENTs go into a native VAE Decode and a native KSampler's LATENT into ours.
"""

from __future__ import annotations

import torch

from wan_core.errors import InputError

from .latent_stats import latent_stats


def video_from_image(images: torch.Tensor) -> torch.Tensor:
    """IMAGE [F, H, W, 3] 0..1 -> video [1, 3, F, H, W] in -1..1 (what vae.encode takes)."""
    if images.ndim != 4 or images.shape[-1] < 3:
        raise InputError(f"Expected IMAGE frames shaped [F, H, W, 3]; got {tuple(images.shape)}.")
    return images[..., :3].permute(3, 0, 1, 2).unsqueeze(0).float() * 2.0 - 1.0


def image_from_video(video: torch.Tensor) -> torch.Tensor:
    """Decoded video [B, 3, F, H, W] in -1..1 -> IMAGE [B*F, H, W, 3] 0..1 on the CPU."""
    frames = video.detach().float().cpu().permute(0, 2, 3, 4, 1)
    return ((frames.reshape(-1, *frames.shape[2:]) + 1.0) * 0.5).clamp(0.0, 1.0)


def _stats(channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    return latent_stats(channels)


def _broadcast(stat: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return stat.to(like.device, like.dtype).view(1, -1, *([1] * (like.ndim - 2)))


def latent_to_comfy(z: torch.Tensor) -> dict:
    """wan_core's normalised latent [B, C, T, h, w] -> ComfyUI LATENT with the raw VAE mean."""
    mean, std = _stats(z.shape[1])
    z = z.detach().float().cpu()
    return {"samples": z * _broadcast(std, z) + _broadcast(mean, z)}


def latent_from_comfy(latent: dict) -> torch.Tensor:
    """ComfyUI LATENT (raw VAE mean [B, C, T, h, w]) -> wan_core's normalised latent."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if samples is None or samples.ndim != 5:
        shape = None if samples is None else tuple(samples.shape)
        raise InputError(
            f"Expected a video LATENT with samples [B, C, T, h, w]; got {shape}. "
            "Use a Wan (video) latent, not an image latent."
        )
    mean, std = _stats(samples.shape[1])
    samples = samples.float()
    return (samples - _broadcast(mean, samples)) / _broadcast(std, samples)


def clip_pair_tokens(embeds: torch.Tensor) -> torch.Tensor:
    """CLIP tokens of two images [2, n, w] -> one sequence [1, 2n, w] (FLF2V, spec 6)."""
    return embeds.reshape(1, -1, embeds.shape[-1])
