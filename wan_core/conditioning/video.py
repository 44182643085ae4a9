"""Resampling a clip in time: a control video to the generation's frame rate and 4n+1 frame count."""

from __future__ import annotations

import logging
import math

import torch

from ..errors import InputError
from .validate import check_frames

log = logging.getLogger(__name__)


def _output_count(n: int, src_fps: float, dst_fps: float, frames: int | None, round_to_4n1: bool) -> int:
    """How many frames to produce: ``frames`` when given, else what the clip's duration holds at ``dst_fps``."""
    if frames is not None:
        return check_frames(frames, auto_round=True) if round_to_4n1 else int(frames)
    count = math.floor((n - 1) * dst_fps / src_fps + 1e-6) + 1
    return (count - 1) // 4 * 4 + 1 if round_to_4n1 else count


def resample_video(
    video: torch.Tensor,
    src_fps: float,
    dst_fps: float | None = None,
    frames: int | None = None,
    round_to_4n1: bool = True,
) -> torch.Tensor:
    """Pick frames of ``video`` ``[N, ...]`` (IMAGE batch) by nearest time -> ``[frames_out, ...]``.

    * ``dst_fps`` given: output frame i shows the source frame nearest to time
      ``i / dst_fps``; the count is ``frames``, or as many as the clip lasts (rounded
      down to 4n+1 with ``round_to_4n1``). Past the clip's end the last frame repeats.
    * only ``frames`` given: the whole clip is stretched uniformly over that many frames.
    """
    if video.ndim < 1 or video.shape[0] == 0:
        raise InputError("resample_video: the video has no frames")
    if src_fps <= 0 or (dst_fps is not None and dst_fps <= 0):
        raise InputError(f"resample_video: frame rates must be positive, got src {src_fps}, dst {dst_fps}")
    n = video.shape[0]
    if dst_fps is None and frames is None:
        dst_fps = src_fps
    count = _output_count(n, src_fps, dst_fps or src_fps, frames, round_to_4n1)
    if count < 1:
        raise InputError(f"resample_video: {count} output frames requested; need at least 1")
    if dst_fps is None:
        step = (n - 1) / (count - 1) if count > 1 else 0.0
        index = [math.floor(i * step + 0.5) for i in range(count)]
    else:
        index = [math.floor(i * src_fps / dst_fps + 0.5) for i in range(count)]
        if index[-1] > n - 1:
            log.warning(
                "control video lasts %d frames at %g fps, shorter than %d frames at %g fps: repeating its last frame",
                n,
                src_fps,
                count,
                dst_fps,
            )
    index_t = torch.tensor(index, device=video.device).clamp_(max=n - 1)
    return video.index_select(0, index_t)
