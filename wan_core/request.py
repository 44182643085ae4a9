"""What one generation asks for, and the decisions that turn it into a run: mode, settings, conditioning.

:class:`GenerateParams` (settings, None = the official default) and :class:`GenerateInputs` (pixel
inputs, a camera) come in; :func:`choose_mode` picks what the loaded DiT runs, :func:`resolve_params`
fills in the task defaults (a frozen :class:`ResolvedParams`, which becomes the video's metadata) and
:func:`build_conditioning` makes the DiT's Conditioning. :class:`wan_core.pipeline.WanPipeline` runs them.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .conditioning import (
    CameraTrajectory,
    Conditioning,
    best_output_size,
    flf2v_conditioning,
    fun_camera_conditioning,
    fun_control_conditioning,
    i2v_conditioning,
    official_i2v_size,
    preset_trajectory,
    t2v_conditioning,
    ti2v_conditioning,
    vace_conditioning,
)
from .configs import TaskDefaults, default_negative_prompt, defaults_for
from .dit.config import DiTConfig
from .errors import ConditioningError, InputError
from .sampling import SamplerSettings
from .sampling.cache import CacheSettings, cache_from_dict
from .sampling.guidance import GuidanceOptions
from .sampling.windows import ContextWindows
from .vae.config import VAEConfig
from .vae.model import WanVAE
from .validation import check_size


@dataclass(frozen=True)
class GenerateParams:
    """What to generate. ``None`` means "the official default for the loaded model's task".

    frames: pixel frames (4n+1); width/height: pixels; cfg: one scale, or a (low_noise,
    high_noise) pair for the two A14B experts (the official order); seed None draws a random
    one (recorded in the result); boundary: where the A14B low-noise expert takes over, as a
    fraction of the timestep range (0, 1] (None: the official 0.875 T2V / 0.9 I2V).
    """

    prompt: str
    negative_prompt: str | None = None
    frames: int | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg: float | tuple[float, float] | None = None
    shift: float | None = None
    solver: str | None = None
    seed: int | None = None
    fps: float | None = None
    vace_strength: float = 1.0
    boundary: float | None = None
    cache: CacheSettings | dict | None = None  # EasyCache / MagCache / TeaCache settings, or None
    guidance: GuidanceOptions | dict | None = None  # CFG-Zero*, zero-init, guidance step range
    sigmas: tuple[float, ...] | None = None  # a custom sigma list (replaces steps and shift)
    context_windows: ContextWindows | dict | None = None  # long videos: overlapping windows along time


@dataclass(frozen=True)
class GenerateInputs:
    """Pixel inputs, all float 0..1: image / last_image [1, H, W, 3], control_video [F, H, W, 3],
    control_mask [F, H, W] (1 = generate), reference_images [N, H, W, 3] (or a list of [1, H, W, 3]
    images of different sizes); camera: a CameraTrajectory for Fun-Camera models."""

    image: torch.Tensor | None = None
    last_image: torch.Tensor | None = None
    control_video: torch.Tensor | None = None
    control_mask: torch.Tensor | None = None
    reference_images: torch.Tensor | list[torch.Tensor] | None = None
    camera: CameraTrajectory | None = None


@dataclass(frozen=True)
class ResolvedParams:
    """GenerateParams with every default filled in and the size checked: what one run uses.

    Built once by :func:`resolve_params` from the task defaults; becomes the video's metadata.
    """

    prompt: str
    negative_prompt: str
    frames: int
    width: int
    height: int
    steps: int
    cfg: float | tuple[float, float]
    shift: float
    solver: str
    seed: int
    fps: float
    vace_strength: float
    boundary: float | None
    cache: CacheSettings | None = None
    guidance: GuidanceOptions | None = None
    sigmas: tuple[float, ...] | None = None
    context_windows: ContextWindows | None = None

    def sampler_settings(self) -> SamplerSettings:
        return SamplerSettings(
            steps=self.steps,
            shift=self.shift,
            cfg=self.cfg,
            solver=self.solver,
            seed=self.seed,
            sigmas=self.sigmas,
            cache=self.cache,
            guidance=self.guidance,
            context_windows=self.context_windows,
        )

    def as_metadata(self) -> dict[str, Any]:
        """A JSON-able dict (a cfg pair stays a tuple here; JSON writes it as a list)."""
        return asdict(self)


def params_from_keywords(prompt: str, params: dict[str, Any]) -> GenerateParams:
    """GenerateParams from keyword arguments; an unknown name is an InputError listing the known ones."""
    known = set(GenerateParams.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise InputError(
            f"generate() got unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known - {'prompt'}))} "
            "and the inputs image, last_image, control_video, control_mask, reference_images, camera."
        )
    return GenerateParams(prompt=prompt, **params)


MODES = ("t2v", "i2v", "flf2v", "ti2v", "vace", "fun-control", "fun-camera")


def _given(inputs: GenerateInputs) -> set[str]:
    return {name for name, value in vars(inputs).items() if value is not None}


def _reject(variant: str, given: set[str], allowed: set[str], hint: str) -> None:
    extra = sorted(given - allowed)
    if extra:
        raise ConditioningError(f"{variant} cannot use {', '.join(extra)} ({hint}).")


def choose_mode(config: DiTConfig, inputs: GenerateInputs) -> str:
    """One of MODES for DiT ``config`` and the non-None fields of ``inputs``.

    Fun-InP models are detected as I2V (same keys and shapes) and run as such.
    """
    task, given, variant = config.task, _given(inputs), config.variant
    if task == "t2v":
        _reject(variant, given, set(), "a text-to-video model: load an I2V/FLF2V/VACE/TI2V model for image inputs")
        return "t2v"
    if task in ("i2v", "flf2v"):
        _reject(variant, given, {"image", "last_image"}, "it takes a start image and optionally an end image")
        if "image" not in given:
            raise InputError(f"{variant} is an image-to-video model: give a start image (--image).")
        if task == "flf2v" and "last_image" not in given:
            raise InputError(f"{variant} is a first-last-frame model: give --image and --last-image.")
        return "flf2v" if "last_image" in given else "i2v"
    if task == "ti2v":
        _reject(variant, given, {"image"}, "TI2V-5B takes text and optionally a start image")
        return "ti2v"
    if task == "vace":
        _reject(
            variant,
            given,
            {"control_video", "control_mask", "reference_images"},
            "VACE takes a control video, a mask and reference images; pass a start image as a reference",
        )
        return "vace"
    if task == "fun-control":
        _reject(variant, given, {"control_video", "image"}, "Fun-Control takes a control video and a start image")
        if "control_video" not in given:
            raise InputError(f"{variant} is a Fun-Control model: give a control video (--control-video).")
        return task
    if task == "fun-camera":
        _reject(variant, given, {"camera", "image"}, "Fun-Camera takes a camera trajectory and a start image")
        return task
    raise ConditioningError(
        f"The standalone pipeline does not support {variant} (task {task!r}); supported tasks: {', '.join(MODES)}."
    )


def _defaults(config: DiTConfig, family: str, width: int | None, height: int | None) -> TaskDefaults:
    """Task defaults; a given size refines them (Wan2.1 I2V at 480p uses shift 3), else the model size does."""
    label = f"{width}*{height}" if width and height else config.size_label
    return defaults_for(family, config.task, label)


def size_from_image(image: torch.Tensor, mode: str, area: int, vae_stride: int) -> tuple[int, int]:
    """(width, height) the official code derives from the input image [1, H, W, 3] and a pixel area.

    TI2V-5B: ``best_output_size`` (multiples of 32); I2V/FLF2V: ``lat = 2*floor(sqrt(area*a)/stride/2)``.
    """
    img_h, img_w = int(image.shape[1]), int(image.shape[2])
    if mode == "ti2v":
        return best_output_size(img_w, img_h, 2 * vae_stride, 2 * vae_stride, area)
    return official_i2v_size(img_h, img_w, area, stride=vae_stride)


def _size(
    request: GenerateParams, inputs: GenerateInputs, mode: str, base: TaskDefaults, vae_stride: int
) -> tuple[int, int]:
    """The requested size; unset sides follow the input image (I2V/FLF2V/TI2V) or the task default."""
    if request.width is not None and request.height is not None:
        return request.width, request.height
    width, height = base.width, base.height
    if inputs.image is not None and mode in ("i2v", "flf2v", "ti2v"):
        width, height = size_from_image(inputs.image, mode, base.width * base.height, vae_stride)
    return request.width or width, request.height or height


def resolve_params(
    config: DiTConfig,
    vae_config: VAEConfig,
    request: GenerateParams,
    inputs: GenerateInputs,
    mode: str,
    family: str | None = None,
) -> ResolvedParams:
    """GenerateParams with every None replaced by the task default; the size and frame count checked.

    ``family`` picks the defaults (``ModelSet.family``: an A14B expert pair is Wan2.2 even though
    its T2V experts are detected as Wan2.1); None = the DiT's own family.
    """
    family = family or config.family
    base = _defaults(config, family, request.width, request.height)
    stride = int(vae_config.spatial_stride)
    width, height = _size(request, inputs, mode, base, stride)
    cfg = request.cfg if request.cfg is not None else base.cfg
    resolved = ResolvedParams(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt or default_negative_prompt(family, config.task),
        frames=request.frames if request.frames is not None else base.frames,
        width=width,
        height=height,
        # a custom sigma list sets the step count
        steps=len(request.sigmas) - 1 if request.sigmas else request.steps if request.steps is not None else base.steps,
        cfg=(float(cfg[0]), float(cfg[1])) if isinstance(cfg, (tuple, list)) else cfg,
        shift=request.shift if request.shift is not None else base.shift,
        solver=request.solver if request.solver is not None else base.solver,
        seed=request.seed if request.seed is not None else random.SystemRandom().randrange(2**32),
        fps=request.fps if request.fps is not None else base.fps,
        vace_strength=request.vace_strength,
        boundary=request.boundary,
        cache=cache_from_dict(request.cache),
        guidance=GuidanceOptions(**request.guidance) if isinstance(request.guidance, dict) else request.guidance,
        sigmas=tuple(float(s) for s in request.sigmas) if request.sigmas else None,
        context_windows=_context_windows(request.context_windows),
    )
    check_size(int(resolved.width), int(resolved.height), int(resolved.frames), 2 * stride)
    return resolved


def _context_windows(value: ContextWindows | dict | None) -> ContextWindows | None:
    """Context windows from GenerateParams (the object, or its fields as a dict, e.g. from JSON)."""
    if value is None or isinstance(value, ContextWindows):
        return value
    if not isinstance(value, dict):
        raise InputError(f"context_windows must be ContextWindows, a dict of its fields or None; got {value!r}.")
    return ContextWindows(**value)


def build_conditioning(
    mode: str,
    vae: WanVAE,
    inputs: GenerateInputs,
    r: ResolvedParams,
    clip_fea: torch.Tensor | None,
    extra_channels: int = 0,
) -> Conditioning:
    """The Conditioning for ``mode`` (checked against the DiT by ``validate_conditioning``)."""
    frames, width, height = int(r.frames), int(r.width), int(r.height)
    if mode == "t2v":
        return t2v_conditioning(vae.config.z_dim, frames, width, height, vae.config.spatial_stride)
    if mode == "ti2v":
        return ti2v_conditioning(vae, inputs.image, frames, width, height)
    if mode == "vace":
        return vace_conditioning(
            vae,
            frames,
            width,
            height,
            control_video=inputs.control_video,
            control_mask=inputs.control_mask,
            reference_images=inputs.reference_images,
            strength=r.vace_strength,
        )
    if mode == "fun-camera":
        camera = inputs.camera if inputs.camera is not None else preset_trajectory("static", frames)
        return fun_camera_conditioning(
            vae, camera, frames, width, height, inputs.image, clip_fea, extra_channels or None
        )
    if mode == "fun-control":
        return fun_control_conditioning(
            vae,
            _required(inputs.control_video, "control_video", mode),
            frames,
            width,
            height,
            start_image=inputs.image,
            clip_fea=clip_fea,
            model_extra_channels=extra_channels,
        )
    image = _required(inputs.image, "image", mode)
    if mode == "flf2v":
        last = _required(inputs.last_image, "last_image", mode)
        return flf2v_conditioning(vae, image, last, frames, width, height, clip_fea=clip_fea)
    return i2v_conditioning(vae, image, frames, width, height, clip_fea=clip_fea)


def _required(value: torch.Tensor | None, name: str, mode: str) -> torch.Tensor:
    """An input :func:`choose_mode` already required for ``mode``."""
    if value is None:
        raise InputError(f"{mode} needs {name}.")
    return value
