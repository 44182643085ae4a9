"""Control-video preprocessing with OpenCV: edges, depth/grayscale normalisation, fitting to size.

Frames are ComfyUI IMAGE batches ``[N, H, W, 3]`` float in 0..1 and come back in the
same layout and device. Normalisations that depend on the content (soft edges,
depth) use the whole clip's range, not each frame's, so the control does not flicker.
Fit the video to the generation size *before* edge detection: resizing an edge
map blurs it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .image import check_images
from .video import resample_video

FitMode = Literal["crop", "letterbox", "stretch"]
LUMA = (0.299, 0.587, 0.114)

__all__ = ["canny", "fit_frames", "normalize_depth", "pose_frames", "resample_video", "soft_edge", "to_grayscale"]


def _gray_uint8(frames: torch.Tensor) -> np.ndarray:
    """``[N, H, W, 3]`` 0..1 -> ``[N, H, W]`` uint8 luma."""
    gray = (frames.detach().float().cpu().clamp(0, 1) * torch.tensor(LUMA)).sum(-1)
    return (gray.numpy() * 255.0).round().astype(np.uint8)


def _as_rgb(gray: np.ndarray | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` 0..1 -> ``[N, H, W, 3]`` float32 on ``like``'s device."""
    gray = torch.as_tensor(gray, dtype=torch.float32)
    return gray[..., None].expand(*gray.shape, 3).contiguous().to(like.device)


def canny(frames: torch.Tensor, low: float = 100, high: float = 200) -> torch.Tensor:
    """Canny edges per frame -> ``[N, H, W, 3]`` with 1 on edges, 0 elsewhere.

    ``low`` / ``high``: hysteresis thresholds on the 0..255 gradient scale; when both
    are <= 1 they are read as fractions of 255 (ComfyUI's Canny node convention).
    """
    frames = check_images(frames, "frames")
    if low > high:
        raise InputError(f"canny: low threshold {low} is above the high threshold {high}; swap them")
    if high <= 1.0:
        low, high = low * 255.0, high * 255.0
    import cv2  # imported on use: keeps ComfyUI start-up and `import wan_core` light

    edges = np.stack([cv2.Canny(g, float(low), float(high)) for g in _gray_uint8(frames)])
    return _as_rgb(edges.astype(np.float32) / 255.0, frames)


def soft_edge(frames: torch.Tensor, method: str = "sobel") -> torch.Tensor:
    """Soft edge strength: Sobel gradient magnitude or |Laplacian| of the luma, scaled to 0..1 by the clip's max."""
    import cv2

    frames = check_images(frames, "frames")
    gray = _gray_uint8(frames).astype(np.float32) / 255.0
    if method == "sobel":
        out = [np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)) for g in gray]
    elif method == "laplacian":
        out = [np.abs(cv2.Laplacian(g, cv2.CV_32F, ksize=3)) for g in gray]
    else:
        raise InputError(f"soft_edge: method {method!r} is unknown; use 'sobel' or 'laplacian'")
    edges = np.stack(out)
    peak = float(edges.max())
    return _as_rgb(edges / peak if peak > 0 else edges, frames)


def to_grayscale(frames: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R BT.601 weights) repeated to 3 channels, float precision kept."""
    frames = check_images(frames, "frames")
    gray = (frames * torch.tensor(LUMA, device=frames.device)).sum(-1)
    return gray[..., None].expand(*gray.shape, 3).contiguous()


def normalize_depth(frames: torch.Tensor, invert: bool = False) -> torch.Tensor:
    """A depth-map video -> 3-channel 0..1 by min-max over the whole clip (``invert`` flips near/far).

    Accepts IMAGE ``[N, H, W, C]`` (channels averaged) or ``[N, H, W]`` raw depth in any unit.
    """
    depth = frames.float()
    if depth.ndim == 4:
        depth = depth[..., :3].mean(-1)
    if depth.ndim != 3:
        raise InputError(f"normalize_depth: expected [N, H, W] or [N, H, W, C], got {tuple(frames.shape)}")
    low, high = depth.min(), depth.max()
    depth = (depth - low) / (high - low) if float(high - low) > 0 else torch.zeros_like(depth)
    if invert:
        depth = 1.0 - depth
    return depth[..., None].expand(*depth.shape, 3).contiguous()


def pose_frames(frames: torch.Tensor) -> torch.Tensor:
    """Rendered pose (or any ready-made control) frames pass through: alpha dropped, clamped to 0..1."""
    return check_images(frames, "frames").clamp(0, 1)


def _resize(x: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, C, height, width]``, bilinear with antialiasing when shrinking."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


def fit_frames(
    frames: torch.Tensor, width: int, height: int, mode: FitMode = "crop", fill: float = 0.0
) -> torch.Tensor:
    """Fit ``[N, H, W, 3]`` to exactly (width, height).

    crop: scale to cover, cut the overflow evenly; letterbox: scale to fit inside,
    pad with ``fill`` (0..1); stretch: resize ignoring the aspect ratio.
    """
    frames = check_images(frames, "frames")
    if width < 1 or height < 1:
        raise InputError(f"fit_frames: target size {width}x{height} is invalid; width and height must be at least 1")
    x = frames.permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    if mode == "stretch":
        out = _resize(x, width, height)
    elif mode in ("crop", "letterbox"):
        scale = max(width / w, height / h) if mode == "crop" else min(width / w, height / h)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        scaled = _resize(x, new_w, new_h)
        out = x.new_full((x.shape[0], 3, height, width), float(fill))
        top, left = (height - new_h) // 2, (width - new_w) // 2
        src_t, src_l = max(0, -top), max(0, -left)
        dst_t, dst_l = max(0, top), max(0, left)
        ch, cw = min(new_h - src_t, height), min(new_w - src_l, width)
        out[:, :, dst_t : dst_t + ch, dst_l : dst_l + cw] = scaled[:, :, src_t : src_t + ch, src_l : src_l + cw]
    else:
        raise InputError(f"fit_frames: mode {mode!r} is unknown; use 'crop', 'letterbox' or 'stretch'")
    return out.permute(0, 2, 3, 1).contiguous()
