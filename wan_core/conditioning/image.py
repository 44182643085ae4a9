"""Image tensors at the conditioning boundary: layout changes, resize rules and official sizes.

ComfyUI images are ``[N, H, W, C]`` floats in 0..1 (C = 3, or 4 with alpha);
the VAE takes videos ``[B, 3, F, H, W]`` in [-1, 1]. The resize rules follow the
official Wan code (spec section 8): bicubic ``F.interpolate`` straight to the
target size, no crop, no clamp. ``"crop"`` keeps the aspect ratio instead: the
image is center-cropped to the target aspect first, then resized bicubically
(ComfyUI's order of operations, with the official filter).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError, NonFiniteError
from ..finite import all_finite

ResizeMode = Literal["official", "crop"]
RESIZE_MODES = ("official", "crop")


def check_images(images: torch.Tensor, name: str) -> torch.Tensor:
    """Check a ComfyUI IMAGE batch ``[N, H, W, C]`` and drop any alpha channel -> ``[N, H, W, 3]``."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name}: expected an IMAGE tensor [N, H, W, 3], got {type(images).__name__}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise InputError(
            f"{name}: expected an IMAGE tensor [N, H, W, 3] (channels last, 0..1), got shape {tuple(images.shape)}"
        )
    if images.shape[0] == 0:
        raise InputError(f"{name}: the image batch is empty; connect at least one image")
    if not all_finite(images):
        raise NonFiniteError(f"{name}: the image holds NaN/Inf pixels; fix the node or file it comes from")
    if images.shape[-1] == 1:
        images = images.expand(*images.shape[:-1], 3)
    return images[..., :3].float()


def to_signed_chw(images: torch.Tensor) -> torch.Tensor:
    """``[N, H, W, 3]`` in 0..1 -> ``[N, 3, H, W]`` in [-1, 1]."""
    return images.permute(0, 3, 1, 2) * 2.0 - 1.0


def center_crop_to_aspect(x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Crop ``[N, C, H, W]`` symmetrically to the aspect ratio width:height (the larger side is cut)."""
    h, w = x.shape[-2:]
    if w * height > h * width:  # too wide
        new_w = max(1, round(h * width / height))
        left = (w - new_w) // 2
        return x[..., :, left : left + new_w]
    new_h = max(1, round(w * height / width))
    top = (h - new_h) // 2
    return x[..., top : top + new_h, :]


def resize_signed(x: torch.Tensor, width: int, height: int, mode: ResizeMode = "official") -> torch.Tensor:
    """Resize ``[N, 3, H, W]`` in [-1, 1] to ``(height, width)`` with bicubic interpolation.

    ``official``: stretch to the target (Wan's I2V/FLF2V code); ``crop``: center-crop
    to the target aspect first. Values are not clamped (as in the official code).
    """
    if mode not in RESIZE_MODES:
        raise InputError(f"resize mode {mode!r} is unknown; use one of {RESIZE_MODES}")
    if mode == "crop":
        x = center_crop_to_aspect(x, width, height)
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)


def official_i2v_size(image_height: int, image_width: int, max_area: int, stride: int = 8) -> tuple[int, int]:
    """Pixel (width, height) that official Wan I2V/FLF2V derives from ``max_area`` and the image aspect.

    ``lat = round(floor(floor(sqrt(max_area * a) / stride) / 2) * 2)`` with
    ``a = H_img / W_img`` for the height (``1 / a`` for the width); pixel = stride * lat.
    """
    aspect = image_height / image_width
    lat_h = round(math.sqrt(max_area * aspect) // stride // 2 * 2)
    lat_w = round(math.sqrt(max_area / aspect) // stride // 2 * 2)
    return stride * lat_w, stride * lat_h


def best_output_size(width: int, height: int, dw: int, dh: int, max_area: int) -> tuple[int, int]:
    """Output (width, height) of official TI2V-5B: multiples of (dw, dh), area <= max_area, closest aspect.

    Two candidates: round the width down first (and derive the height) or the
    height first; the one whose aspect ratio deviates less (as a factor) wins,
    the height-first one on a tie.
    """
    ratio = width / height
    float_w = math.sqrt(max_area * ratio)
    float_h = max_area / float_w
    w1 = int(float_w // dw * dw)
    h1 = int(max_area / w1 // dh * dh)
    h2 = int(float_h // dh * dh)
    w2 = int(max_area / h2 // dw * dw)

    def deviation(w: int, h: int) -> float:
        return max(ratio / (w / h), (w / h) / ratio)

    return (w1, h1) if deviation(w1, h1) < deviation(w2, h2) else (w2, h2)


def lanczos_cover_crop(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """One image ``[H, W, 3]`` 0..1 -> ``[3, height, width]`` in [-1, 1], as official TI2V-5B prepares it.

    PIL LANCZOS resize so the image covers (width, height) (scale = larger of the
    two ratios), then a center crop to exactly (width, height). Goes through
    8-bit like the official code, which starts from a PIL image.
    """
    array = (image.detach().float().clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
    pil = Image.fromarray(array)
    scale = max(width / pil.width, height / pil.height)
    new_w, new_h = round(pil.width * scale), round(pil.height * scale)
    pil = pil.resize((new_w, new_h), Image.Resampling.LANCZOS)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    pil = pil.crop((left, top, left + width, top + height))
    out = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).to(image.device)
    return out.permute(2, 0, 1) * 2.0 - 1.0


def paste_on_white(x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``[3, H, W]`` in [-1, 1] -> ``[3, height, width]``: aspect-preserving bilinear fit, centered on white.

    This is how official VACE places a reference image whose size differs from the video.
    """
    h, w = x.shape[-2:]
    if (h, w) == (height, width):
        return x
    scale = min(height / h, width / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = F.interpolate(x[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    canvas = torch.ones(3, height, width, dtype=x.dtype, device=x.device)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas[:, top : top + new_h, left : left + new_w] = resized
    return canvas
