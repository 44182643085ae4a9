"""Video continuation: the last frames of a finished clip start a new run, and the clips are joined.

The last ``overlap`` frames of the previous video become the known start of the next run, in
the form the loaded model takes known frames:

* I2V / Fun-InP (and Wan2.2 I2V-A14B): they are the anchored frames 0..k-1 of ``y`` (mask 1);
* VACE: the control video starts with them under mask 0 ("keep"), the rest is mask 1 (generate);
* TI2V-5B: the latent frames that encode them (k cut to 4n+1) are locked (per-token t = 0);
* Fun-Camera: they are the start frames of the camera conditioning.

After sampling, :func:`join_continuation` matches the new clip's colour and brightness to the
previous clip over the shared frames (per-channel mean and standard deviation), so long chains
do not drift, and returns ``previous + new[overlap:]``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConditioningError, InputError
from .camera import CameraTrajectory
from .fun_camera import fun_camera_conditioning
from .i2v import i2v_conditioning
from .image import check_images, resize_signed, to_signed_chw
from .latents import checked_geometry, encode_frames, latent_frames, place_in_time, usable_frames
from .types import Conditioning, FrameLock
from .vace import vace_conditioning

CONTINUABLE = ("i2v", "vace", "ti2v", "fun-camera")


def _tail(previous: torch.Tensor, overlap: int, frames: int) -> torch.Tensor:
    """The last ``overlap`` frames of IMAGE ``previous`` [F, H, W, 3] (checked)."""
    previous = check_images(previous, "previous video")
    if not 1 <= overlap <= previous.shape[0]:
        raise InputError(
            f"overlap_frames must lie in 1..{previous.shape[0]} (the previous video's length), got {overlap}."
        )
    if overlap >= frames:
        raise InputError(f"overlap_frames ({overlap}) must be below the new run's frames ({frames}): nothing to add.")
    return previous[-overlap:]


def _vace(vae: Any, tail: torch.Tensor, frames: int, width: int, height: int, strength: float) -> Conditioning:
    """VACE extension: the tail kept (mask 0) at the start of a grey control video, the rest generated."""
    k = tail.shape[0]
    video = torch.cat([tail, tail.new_full((frames - k, *tail.shape[1:]), 0.5)])  # 0.5 = grey = 0 in [-1, 1]
    mask = torch.ones(frames, height, width)
    mask[:k] = 0.0
    return vace_conditioning(vae, frames, width, height, control_video=video, control_mask=mask, strength=strength)


def _ti2v(vae: Any, tail: torch.Tensor, frames: int, width: int, height: int) -> Conditioning:
    """TI2V-5B: lock the latent frames that encode the tail's first 4n+1 frames."""
    z_dim, stride, frames, width, height = checked_geometry(vae, frames, width, height, 48, "TI2V-5B")
    pixels = resize_signed(to_signed_chw(tail[: usable_frames(tail.shape[0])]), width, height, "crop")  # [k, 3, H, W]
    known = encode_frames(vae, pixels)  # [1, 48, j + 1, h, w]
    total = latent_frames(frames)
    mask = torch.ones(1, 1, total, 1, 1, device=known.device)
    mask[:, :, : known.shape[2]] = 0.0
    shape = (z_dim, total, height // stride, width // stride)
    return Conditioning(latent_shape=shape, frame_lock=FrameLock(latent=place_in_time(known, total), mask=mask))


def continuation_conditioning(
    vae: Any,
    model_config: Any,
    previous: torch.Tensor,
    overlap: int,
    frames: int,
    width: int,
    height: int,
    clip_fea: torch.Tensor | None = None,
    trajectory: CameraTrajectory | None = None,
    vace_strength: float = 1.0,
) -> Conditioning:
    """The conditioning of a run of ``frames`` frames that starts with the last ``overlap`` frames of
    ``previous`` (IMAGE [F, H, W, 3]), in the layout of the model ``model_config`` (a DiTConfig).

    ``clip_fea``: CLIP features of the first shared frame (Wan2.1 I2V); ``trajectory``: the camera
    move of the new run (Fun-Camera models).
    """
    task = str(model_config.task)
    tail = _tail(previous, int(overlap), int(frames))
    if task == "i2v":
        return i2v_conditioning(vae, tail, frames, width, height, clip_fea=clip_fea, resize="crop")
    if task == "vace":
        return _vace(vae, tail, frames, width, height, vace_strength)
    if task == "ti2v":
        return _ti2v(vae, tail, frames, width, height)
    if task == "fun-camera":
        if trajectory is None:
            raise ConditioningError("continuing with a Fun-Camera model needs the new run's camera trajectory")
        return fun_camera_conditioning(
            vae, trajectory, frames, width, height, tail, clip_fea, model_config.extra_channels, "crop"
        )
    raise ConditioningError(
        f"{model_config.variant} ({task}) cannot continue a video: it takes no known frames. Use an I2V, VACE, "
        f"TI2V-5B or Fun-Camera model (supported: {', '.join(CONTINUABLE)})."
    )


def match_colors(
    frames: torch.Tensor, source: torch.Tensor, target: torch.Tensor, strength: float = 1.0
) -> torch.Tensor:
    """Frames [F, H, W, 3] 0..1 with per-channel statistics moved from ``source`` to ``target``.

    ``x' = (x - mean_s) * std_t / std_s + mean_t`` per RGB channel (means/stds over all pixels of
    ``source`` and ``target``, e.g. the same scene in two clips), blended by ``strength``, clamped to 0..1.
    """
    src, tgt = source.reshape(-1, 3).double(), target.reshape(-1, 3).double()
    scale = tgt.std(0) / src.std(0).clamp_min(1e-4)
    matched = (frames.double() - src.mean(0)) * scale + tgt.mean(0)
    out = frames.double() + float(strength) * (matched - frames.double())
    return out.clamp(0.0, 1.0).to(frames.dtype)


def join_continuation(
    previous: torch.Tensor, new: torch.Tensor, overlap: int, color_match: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(joined [F_prev + F_new - overlap, H, W, 3], the new clip after colour matching [F_new, H, W, 3]).

    The shared frames come from ``previous`` (they are its own); ``color_match`` in 0..1 is the
    strength of the colour/brightness match of ``new`` to ``previous`` over the shared frames.
    """
    if previous.shape[1:] != new.shape[1:]:
        raise InputError(
            f"The new clip is {tuple(new.shape[1:3])} pixels but the previous one {tuple(previous.shape[1:3])}: "
            "generate the continuation at the previous video's width and height."
        )
    if not 1 <= overlap < new.shape[0]:
        raise InputError(f"overlap {overlap} must lie in 1..{new.shape[0] - 1} (below the new clip's length).")
    if color_match > 0:
        new = match_colors(new, new[:overlap], previous[-overlap:], color_match)
    return torch.cat([previous, new[overlap:].to(previous.dtype)]), new
