"""Long videos from plain Python: continue a finished video with a loaded :class:`WanPipeline`.

    from wan_core.longvideo import extend_video
    result = extend_video(pipe, GenerateParams(prompt="...", frames=81), previous_frames, overlap=9)
    result.save("longer.mp4")   # previous frames + 81 - 9 new ones

Context windows (one run longer than the model's trained length) need no extra call: pass
``context_windows=ContextWindows(...)`` to ``pipe.generate``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import torch

from .conditioning import validate_conditioning
from .conditioning.camera import CameraTrajectory
from .conditioning.extend import CONTINUABLE, continuation_conditioning, join_continuation
from .errors import ConditioningError
from .memory import on_device
from .pipeline import GenerateResult, WanPipeline
from .progress import NO_HOOKS, RunHooks
from .request import GenerateInputs, GenerateParams, resolve_params

log = logging.getLogger(__name__)


def extend_video(
    pipe: WanPipeline,
    request: GenerateParams,
    previous: torch.Tensor,
    overlap: int = 9,
    color_match: float = 1.0,
    camera: CameraTrajectory | None = None,
    hooks: RunHooks = NO_HOOKS,
    source_fps: float | None = None,
) -> GenerateResult:
    """Generate ``request.frames`` frames that start with the last ``overlap`` frames of ``previous``
    (IMAGE [F, H, W, 3] 0..1) and return the joined video (F + frames - overlap frames).

    The new run uses the loaded model's way of taking known frames (I2V, VACE, TI2V-5B or
    Fun-Camera with ``camera``); its size defaults to the previous video's, its fps to ``source_fps``.
    ``color_match`` (0..1) matches the new clip's colour/brightness to the shared frames.
    """
    config = pipe.dit.config
    task = str(config.task)
    if task not in CONTINUABLE:
        raise ConditioningError(
            f"{config.variant} ({task}) cannot continue a video; load an I2V, VACE, TI2V-5B or Fun-Camera model."
        )
    request = replace(
        request,
        width=request.width or int(previous.shape[2]),
        height=request.height or int(previous.shape[1]),
        fps=request.fps or source_fps,
    )
    resolved = resolve_params(config, pipe.vae.config, request, GenerateInputs(), task, pipe.models.family)
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    positive, negative = pipe.encode_prompts(resolved.prompt, resolved.negative_prompt)
    first_shared = previous[-overlap:][:1]
    clip_fea = pipe.encode_clip(GenerateInputs(image=first_shared)) if task in ("i2v", "fun-camera") else None
    frames, width, height = int(resolved.frames), int(resolved.width), int(resolved.height)
    with on_device(pipe.vae, pipe.device, pipe.offload):
        cond = continuation_conditioning(
            pipe.vae, config, previous, overlap, frames, width, height, clip_fea, camera, resolved.vace_strength
        )
    validate_conditioning(cond, config, pipe.vae.config)
    latent = pipe.sample(positive, negative, cond, resolved, hooks)
    new = pipe.decode(latent, hooks)
    timings["sample_s"] = time.perf_counter() - tick
    joined, _ = join_continuation(previous.float(), new, overlap, color_match)
    log.info("Extended %d frames by %d to %d.", previous.shape[0], frames - overlap, joined.shape[0])
    meta = {
        **resolved.as_metadata(),
        "mode": f"extend ({task})",
        "variant": pipe.models.variant,
        "previous_frames": int(previous.shape[0]),
        "overlap_frames": int(overlap),
        "color_match": float(color_match),
        "loras": pipe.lora_metadata(),
        **{k: v for k, v in pipe.names.items() if v},
    }
    return GenerateResult(joined, float(resolved.fps), latent.cpu(), meta, timings)
