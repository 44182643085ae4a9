"""Image preprocessing for CLIP vision: ComfyUI IMAGE [N, H, W, 3] in 0..1 -> normalised pixels.

``crop="none"`` is the official Wan preprocessing (WAN_SPEC 6): a direct bicubic resize to
S x S (align_corners=False, no antialias, aspect ratio not kept). Resizing in [-1, 1] and
mapping back, as the official code does, equals resizing in [0, 1] (bicubic is affine).
``crop="center"`` follows ComfyUI's CLIPVisionEncode: keep the centred square of side
min(H, W), then a bicubic resize with antialias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CROPS = ("none", "center")


def _as_nchw(images: torch.Tensor) -> torch.Tensor:
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[-1] not in (3, 4):
        raise InputError(
            f"CLIP vision expects images [N, H, W, 3] (ComfyUI IMAGE, values 0..1); got shape {tuple(images.shape)}."
        )
    return images[..., :3].permute(0, 3, 1, 2)


def center_square(pixels: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> the centred [N, C, s, s], s = min(H, W)."""
    h, w = pixels.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return pixels[..., top : top + s, left : left + s]


def preprocess(
    images: torch.Tensor,
    size: int,
    crop: str = "none",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """images [N, H, W, 3] in 0..1 -> CLIP-normalised pixels [N, 3, size, size] in ``dtype`` on ``device``."""
    if crop not in CROPS:
        raise InputError(f"crop must be one of {CROPS}, got {crop!r}.")
    pixels = _as_nchw(images).to(device=device, dtype=torch.float32)
    if crop == "center":
        pixels = center_square(pixels)
    if tuple(pixels.shape[-2:]) != (size, size):
        pixels = F.interpolate(
            pixels, size=(size, size), mode="bicubic", align_corners=False, antialias=crop == "center"
        )
    mean = torch.tensor(CLIP_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=pixels.device).view(1, 3, 1, 1)
    return ((pixels - mean) / std).to(dtype)
