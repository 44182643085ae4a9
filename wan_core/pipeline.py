"""Standalone generation: text/image/first-last-frame/TI2V/VACE to video from Python in a few lines.

    from wan_core.pipeline import WanPipeline
    pipe = WanPipeline.from_files(model="wan2.1_t2v_1.3B_bf16.safetensors",
                                  vae="wan_2.1_vae.safetensors",
                                  text_encoder="umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    result = pipe.generate("a corgi surfing a wave", frames=33, width=832, height=480, seed=1)
    result.save("corgi.mp4")

The mode follows the loaded DiT (``dit.config.task``) and the inputs given:
T2V, I2V (``image``), FLF2V (``image`` + ``last_image``), TI2V-5B (optional
``image``), VACE (``control_video`` / ``control_mask`` / ``reference_images``),
Fun-Camera (``camera`` trajectory, optional ``image``), and Wan2.2 A14B when a
low-noise expert is loaded too. ``context_windows`` samples long videos in windows;
``wan_core.longvideo.extend_video`` continues a finished video. Unset sampling parameters
take the official per-task defaults (``wan_core.configs.defaults_for``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import torch

from .checkpoints import CheckpointInput
from .conditioning import (
    CameraTrajectory,
    Conditioning,
    best_output_size,
    check_vae,
    flf2v_conditioning,
    fun_camera_conditioning,
    fun_control_conditioning,
    i2v_conditioning,
    official_i2v_size,
    preset_trajectory,
    t2v_conditioning,
    ti2v_conditioning,
    vace_conditioning,
    validate_conditioning,
)
from .configs import TaskDefaults, default_negative_prompt, defaults_for
from .devices import compute_dtype_for, empty_cache, resolve_device, resolve_dtype
from .dit.config import DiTConfig, ambiguity_note, describe_variant
from .dit.model import WanDiT
from .errors import ConditioningError, InputError
from .lora import LoraSpec
from .memory import move, on_device
from .model_fit import ModelFacts
from .modelset import ModelSet
from .progress import NO_HOOKS, RunHooks
from .sampling import Experts, SamplerSettings, sample
from .sampling.cache import CacheSettings, cache_from_dict
from .sampling.guidance import GuidanceOptions
from .sampling.model import DiTLike
from .sampling.windows import ContextWindows
from .text.loader import TextEncoder
from .vae.config import VAEConfig
from .vae.model import WanVAE
from .validation import check_generation, check_size
from .vision.loader import ClipVision

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


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


@dataclass
class GenerateResult:
    """frames: float32 [F, H, W, 3] in 0..1 on CPU; latent: normalised [1, C, T, h, w];
    params: the resolved settings (stored as the video's metadata); timings in seconds."""

    frames: torch.Tensor
    fps: float
    latent: torch.Tensor
    params: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)

    def save(self, path: PathLike) -> Path:
        """Write the video (.mp4 H.264 or .webp) with ``params`` as JSON metadata."""
        from .video_io import write_video

        return write_video(self.frames, path, fps=self.fps, metadata=self.params)


def _name_of(source: object) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    if isinstance(source, (list, tuple)) and source and isinstance(source[0], (str, os.PathLike)):
        return Path(source[0]).name
    return None


class WanPipeline:
    """Loaded models plus the logic that turns a prompt (and images / control video) into frames.

    With ``offload`` the DiT(s) and the VAE wait in CPU memory and visit ``device`` only
    for their phase (the text encoder drops its weights after encoding), so peak device
    memory is about the largest single model rather than their sum.
    """

    def __init__(
        self,
        dit: WanDiT,
        vae: WanVAE,
        text_encoder: TextEncoder,
        clip_vision: ClipVision | None = None,
        dit_low: WanDiT | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        offload: bool = False,
        names: dict[str, str | None] | None = None,
    ) -> None:
        self.models = ModelSet(high=dit, low=dit_low)  # checks that two experts belong together
        self.vae, self.text_encoder, self.clip_vision = vae, text_encoder, clip_vision
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.offload = offload
        self.names = dict(names or {})
        self._attached_loras = contextlib.ExitStack()
        check_vae(dit.config, vae.config)

    @property
    def dit(self) -> WanDiT:
        """The DiT (the high-noise expert for Wan2.2 A14B)."""
        return self.models.high

    @property
    def dit_low(self) -> WanDiT | None:
        return self.models.low

    @classmethod
    def from_files(
        cls,
        model: CheckpointInput,
        vae: PathLike,
        text_encoder: PathLike,
        clip_vision: PathLike | None = None,
        model_low: CheckpointInput | None = None,
        tokenizer: PathLike | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        offload: bool | None = None,
        attention: str = "auto",
        text_cache: PathLike | bool | None = None,
        fast_8bit: bool = False,
    ) -> WanPipeline:
        """Load every component from files (any layout the loaders accept).

        ``model`` is the DiT (the high-noise expert for Wan2.2 A14B, ``model_low`` the
        low-noise one). ``offload`` None means: offload on accelerators, not on CPU.
        ``text_cache``: the text encoder's embedding disk cache folder (False: memory only).
        ``fast_8bit``: the DiT's opt-in approximate 8-bit compute (``WanDiT.set_fast_8bit``).
        """
        from .text.loader import load_text_encoder
        from .vae.loader import load_vae
        from .vision.loader import load_clip_vision

        dev = resolve_device(device)
        weights = resolve_dtype(dtype, dev)  # fp8 / int8 here = storage of the DiT's Linear weights
        cdtype = compute_dtype_for(weights, dev)
        offload = dev.type != "cpu" if offload is None else offload
        home = torch.device("cpu") if offload else dev
        started = time.perf_counter()
        dit = _load_dit(model, home, weights, cdtype, attention, dev if fast_8bit else None)
        dit_low = (
            _load_dit(model_low, home, weights, cdtype, attention, dev if fast_8bit else None) if model_low else None
        )
        vae_model = load_vae(vae, device=home, dtype=cdtype)
        te = load_text_encoder(
            text_encoder, tokenizer=tokenizer, device=dev, dtype=cdtype, cache_dir=text_cache, keep_loaded=not offload
        )
        # CLIP-H (0.6 B) stays on the compute device: it cannot move, and it is small next to a 14B DiT
        clip = load_clip_vision(clip_vision, device=dev, dtype=cdtype) if clip_vision else None
        log.info(
            "Loaded %s in %.1f s",
            describe_variant(dit.config, dit_low.config if dit_low else None),
            time.perf_counter() - started,
        )
        if dit_low is None and ambiguity_note(dit.config):
            log.info("%s.", ambiguity_note(dit.config))
        names = {
            "model": _name_of(model),
            "model_low": _name_of(model_low),
            "vae": _name_of(vae),
            "text_encoder": _name_of(text_encoder),
            "clip_vision": _name_of(clip_vision),
        }
        return cls(dit, vae_model, te, clip, dit_low, device=dev, dtype=cdtype, offload=offload, names=names)

    # ------------------------------------------------------------------ LoRA

    def add_loras(self, specs: Sequence[LoraSpec]) -> None:
        """Attach LoRAs (per-expert strengths for A14B) until :meth:`remove_loras`.

        The pipeline owns its DiTs, so the LoRAs stay attached across ``generate`` calls and
        merged ones keep no copy of the original weights (removing them subtracts).
        """
        if not specs:
            return
        added = ModelSet(high=self.models.high, low=self.models.low, loras=tuple(specs))
        self._attached_loras.enter_context(added.attached_loras(keep_original=False))
        self.models = self.models.with_loras(specs)

    def remove_loras(self) -> None:
        """Detach every LoRA added with :meth:`add_loras`."""
        self._attached_loras.close()
        self.models = dataclasses.replace(self.models, loras=())

    def lora_metadata(self) -> list[dict[str, Any]]:
        """The attached LoRAs as recorded in a video's metadata."""
        return [
            {"file": _name_of(spec.path) or "<dict>", "strength": spec.strength, "strength_low": spec.strength_low}
            for spec in self.models.loras
        ]

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        prompt: str | GenerateParams,
        *,
        hooks: RunHooks | None = None,
        image: torch.Tensor | None = None,
        last_image: torch.Tensor | None = None,
        control_video: torch.Tensor | None = None,
        control_mask: torch.Tensor | None = None,
        reference_images: torch.Tensor | None = None,
        camera: CameraTrajectory | None = None,
        **params: Any,
    ) -> GenerateResult:
        """Generate one video. ``prompt`` is a string (then ``params`` are GenerateParams fields)
        or a ready GenerateParams; images are float 0..1 tensors (see GenerateInputs)."""
        request = prompt if isinstance(prompt, GenerateParams) else _params(prompt, params)
        inputs = GenerateInputs(image, last_image, control_video, control_mask, reference_images, camera)
        return self.run(request, inputs, hooks or NO_HOOKS)

    def run(self, request: GenerateParams, inputs: GenerateInputs, hooks: RunHooks) -> GenerateResult:
        """The whole pipeline: resolve defaults, encode text/images, sample, decode."""
        timings: dict[str, float] = {}
        request, inputs = check_generation(ModelFacts.of_pipeline(self), request, inputs, self.device)
        mode, resolved = self.resolve(request, inputs)
        tick = time.perf_counter()
        positive, negative = self.encode_prompts(resolved.prompt, resolved.negative_prompt)
        clip_fea = self.encode_clip(inputs)
        timings["encode_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        with on_device(self.vae, self.device, self.offload):
            cond = build_conditioning(mode, self.vae, inputs, resolved, clip_fea, self.dit.config.extra_channels)
        validate_conditioning(cond, self.dit.config, self.vae.config)
        latent = self.sample(positive, negative, cond, resolved, hooks)
        timings["sample_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        frames = self.decode(latent, hooks)
        timings["decode_s"] = time.perf_counter() - tick
        meta = {
            **resolved.as_metadata(),
            "mode": mode,
            "variant": self.models.variant,
            "experts": "high+low" if self.models.is_pair else "single",
            "loras": self.lora_metadata(),
            **{k: v for k, v in self.names.items() if v},
        }
        log.info(
            "Generated %d frames %dx%d (%s) in %.1f s",
            frames.shape[0],
            frames.shape[2],
            frames.shape[1],
            mode,
            sum(timings.values()),
        )
        return GenerateResult(frames=frames, fps=float(resolved.fps), latent=latent.cpu(), params=meta, timings=timings)

    def resolve(self, request: GenerateParams, inputs: GenerateInputs) -> tuple[str, ResolvedParams]:
        """The mode the loaded DiT runs for these inputs, and the settings with every default filled in."""
        mode = choose_mode(self.dit.config, inputs)
        return mode, resolve_params(self.dit.config, self.vae.config, request, inputs, mode, self.models.family)

    def encode_prompts(self, prompt: str, negative: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """umT5 embeddings: ([ [L_pos, D] ], [ [L_neg, D] ]) on the compute device."""
        with torch.no_grad():
            pos, neg = self.text_encoder.encode([prompt, negative])  # the encoder picks its own device
        if self.offload:
            self.text_encoder.release()
        return [pos.to(self.device)], [neg.to(self.device)]

    def encode_clip(self, inputs: GenerateInputs) -> torch.Tensor | None:
        """CLIP-H tokens [1, 257 | 514, width] for models with an image embedding, else None."""
        if not self.dit.config.clip_dim or inputs.image is None:
            return None
        if self.clip_vision is None:
            raise InputError(
                f"{self.dit.config.variant} needs CLIP vision features of the input image: "
                "pass clip_vision (e.g. clip_vision_h.safetensors)."
            )
        images = [inputs.image[:1]]
        if self.dit.config.task == "flf2v" and inputs.last_image is not None:  # emb_pos covers 2 x 257 tokens
            images.append(inputs.last_image[:1])
        with torch.no_grad():
            tokens = [self.clip_vision.encode(img) for img in images]  # each [1, 257, W]
        return torch.cat(tokens, dim=1)

    def sampler_inputs(self, resolved: ResolvedParams) -> tuple[DiTLike | Experts, SamplerSettings]:
        """The sampling target (the DiT or the A14B experts) and the settings for one run.

        With ``offload`` the sampler keeps only the active expert on the device when memory is short.
        """
        target = self.models.sampling_target(resolved.boundary, offload="auto" if self.offload else "never")
        return target, resolved.sampler_settings()

    def sample(
        self,
        positive: list[torch.Tensor],
        negative: list[torch.Tensor],
        cond: Conditioning,
        resolved: ResolvedParams,
        hooks: RunHooks,
    ) -> torch.Tensor:
        """Run the sampler -> normalised latent [1, C, T, h, w] (VACE reference frames already trimmed).

        The sampler moves each DiT to the device when its steps start; with ``offload``
        they return to the CPU afterwards.
        """
        target, settings = self.sampler_inputs(resolved)
        try:
            return sample(target, positive, negative, cond, settings, hooks=hooks, device=self.device)
        finally:
            if self.offload:
                move([self.dit, self.dit_low], "cpu")
                empty_cache(self.device)

    def decode(self, latent: torch.Tensor, hooks: RunHooks = NO_HOOKS) -> torch.Tensor:
        """Normalised latent [1, C, T, h, w] -> frames [F, H, W, 3] float32 0..1 on CPU."""
        hooks.check()
        with on_device(self.vae, self.device, self.offload), torch.no_grad():
            video = self.vae.decode(latent.to(self.device), hooks=hooks)  # [1, 3, F, H, W] in -1..1
        if self.offload:
            empty_cache(self.device)
        return video[0].float().clamp(-1, 1).add(1).mul(0.5).permute(1, 2, 3, 0).contiguous().cpu()


def _load_dit(
    source: CheckpointInput,
    device: torch.device,
    weights: torch.dtype,
    compute: torch.dtype,
    attention: str,
    fast_8bit_on: torch.device | None = None,
) -> WanDiT:
    """A DiT on ``device`` with Linear weights in ``weights`` (fp8 files stay fp8), computing in ``compute``.

    ``fast_8bit_on``: turn the 8-bit path on for running on that device (None: off).
    """
    from .dit.loader import load_dit

    dit = load_dit(source, device=device, dtype=weights, attention=attention)
    dit.set_compute_dtype(compute)  # loaded on the CPU for offloading: keep the accelerator's dtype
    if fast_8bit_on is not None:
        dit.set_fast_8bit(True, run_on=fast_8bit_on)
    return dit


def _params(prompt: str, params: dict[str, Any]) -> GenerateParams:
    """GenerateParams from keyword arguments; an unknown name is an InputError listing the known ones."""
    known = set(GenerateParams.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise InputError(
            f"generate() got unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known - {'prompt'}))} "
            "and the inputs image, last_image, control_video, control_mask, reference_images, camera."
        )
    return GenerateParams(prompt=prompt, **params)


# ---------------------------------------------------------------- decisions: mode, settings, conditioning

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
