"""The whole check pass for one generation request: settings, input tensors, and what the model can do.

Sits above the requests, conditioning and sampling it checks; the single-value checks it is built from
(numbers, sizes, pixels, files, output paths) live in :mod:`wan_core.validation`, which the lower layers
use too. Run by the CLI before any model loads and by ``WanPipeline.run`` before the text encoder runs.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import torch

from . import model_fit
from .conditioning.camera import CameraTrajectory
from .errors import InputError, NonFiniteError
from .finite import all_finite
from .model_fit import ModelFacts
from .request import GenerateInputs, GenerateParams, choose_mode, resolve_params
from .sampling.settings import SOLVERS
from .validation import (
    API_NAMES,
    Names,
    check_cfg,
    check_frames,
    check_number,
    check_pixels,
    check_reference_images,
    check_text,
)


def check_settings(params: GenerateParams, names: Names = API_NAMES) -> GenerateParams:
    """GenerateParams with every given field checked (None = default, resolved later). Returns it normalised."""
    check_text(params.prompt, "prompt", names)
    check_text(params.negative_prompt, "negative_prompt", names, optional=True)
    changes: dict[str, Any] = {}
    for name in ("width", "height", "steps", "shift", "seed", "fps", "vace_strength", "boundary"):
        value = getattr(params, name)
        if value is not None:
            changes[name] = check_number(value, name, names)
    if params.frames is not None:
        changes["frames"] = check_frames(params.frames, names)
    if params.cfg is not None:
        changes["cfg"] = check_cfg(params.cfg, names)
    if params.solver is not None and params.solver not in SOLVERS:
        raise InputError(f"{names('solver')} {params.solver!r} is unknown; use one of {', '.join(SOLVERS)}.")
    return replace(params, **changes)


def check_camera(value: Any, names: Names = API_NAMES) -> CameraTrajectory:
    """A CameraTrajectory (its shapes are checked when it is built) with finite poses."""
    if not isinstance(value, CameraTrajectory):
        raise InputError(
            f"{names('camera')} must be a CameraTrajectory (wan_core.conditioning.preset_trajectory or "
            f"read_pose_file); got {type(value).__name__}."
        )
    if not (all_finite(value.intrinsics) and all_finite(value.c2w)):
        raise NonFiniteError(f"{names('camera')} has NaN/Inf camera poses: fix the pose file or trajectory.")
    return value


def check_inputs(inputs: GenerateInputs, names: Names = API_NAMES) -> GenerateInputs:
    """GenerateInputs with each given tensor checked and normalised (numpy -> torch, missing batch dim added)."""
    changes: dict[str, Any] = {}
    for field in fields(inputs):
        value = getattr(inputs, field.name)
        if value is None:
            continue
        if field.name == "reference_images":
            changes[field.name] = check_reference_images(value, names)
        elif field.name == "camera":
            changes[field.name] = check_camera(value, names)
        else:
            changes[field.name] = check_pixels(value, field.name, names)
    return replace(inputs, **changes)


def check_generation(
    facts: ModelFacts, request: GenerateParams, inputs: GenerateInputs, device: torch.device, names: Names = API_NAMES
) -> tuple[GenerateParams, GenerateInputs]:
    """The whole pass for one generation: settings, inputs, model fit, derived sizes and limits.

    Returns ``request`` and ``inputs`` normalised (numbers as Python numbers, numpy inputs as tensors).
    Runs no model and allocates nothing on ``device``.
    """
    request = check_settings(request, names)
    inputs = check_inputs(inputs, names)
    model_fit.check_model_set(facts.config, facts.low_config, facts.vae_config, names)
    given = {f.name for f in fields(inputs) if getattr(inputs, f.name) is not None}
    model_fit.check_usable(facts, request, given, names)
    mode = choose_mode(facts.config, inputs)
    explicit = request.width is not None and request.height is not None
    images = [(n, getattr(inputs, n)) for n in ("image", "last_image") if getattr(inputs, n) is not None]
    for name, image in images:
        model_fit.check_image_for_size(image, name, explicit, names)
    resolved = resolve_params(facts.config, facts.vae_config, request, inputs, mode, facts.family)
    width, height, frames = int(resolved.width), int(resolved.height), int(resolved.frames)
    model_fit.check_size_limits(facts.config, facts.vae_config, width, height, frames, device, names)
    for name, image in images:
        model_fit.warn_upscale(image, names(name), width, height)
    return request, inputs
