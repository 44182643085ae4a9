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
and Wan2.2 A14B when a low-noise expert is loaded too. Unset sampling parameters
take the official per-task defaults (``wan_core.configs.defaults_for``).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import torch

from .devices import empty_cache, is_fp8, resolve_device, resolve_dtype
from .dit.config import ambiguity_note, describe_variant
from .errors import ConditioningError, InputError
from .memory import move, on_device
from .model_fit import ModelFacts, check_model_set
from .progress import NO_HOOKS, RunHooks
from .validation import check_generation, check_size

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class GenerateParams:
    """What to generate. ``None`` means "the official default for the loaded model's task".

    frames: pixel frames (4n+1); width/height: pixels; cfg: one scale, or a
    (low_noise, high_noise) pair for the two A14B experts (the official order); seed None draws a random one (recorded in the result).
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


@dataclass(frozen=True)
class GenerateInputs:
    """Pixel inputs, all float 0..1: image / last_image [1, H, W, 3], control_video [F, H, W, 3],
    control_mask [F, H, W] (1 = generate), reference_images [N, H, W, 3] (or a list of [1, H, W, 3]
    images of different sizes)."""

    image: torch.Tensor | None = None
    last_image: torch.Tensor | None = None
    control_video: torch.Tensor | None = None
    control_mask: torch.Tensor | None = None
    reference_images: torch.Tensor | list[torch.Tensor] | None = None


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


def _name_of(source: Any) -> str | None:
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
        dit: Any,
        vae: Any,
        text_encoder: Any,
        clip_vision: Any = None,
        dit_low: Any = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        offload: bool = False,
        names: dict[str, str | None] | None = None,
    ) -> None:
        self.dit, self.dit_low, self.vae = dit, dit_low, vae
        self.text_encoder, self.clip_vision = text_encoder, clip_vision
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.offload = offload
        self.names = dict(names or {})
        self.loras: list[dict[str, Any]] = []
        _check_pair(dit, dit_low, vae)

    @classmethod
    def from_files(
        cls,
        model: Any,
        vae: PathLike,
        text_encoder: PathLike,
        clip_vision: PathLike | None = None,
        model_low: Any = None,
        tokenizer: PathLike | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        offload: bool | None = None,
        attention: str = "auto",
        text_cache: PathLike | bool | None = None,
    ) -> WanPipeline:
        """Load every component from files (any layout the loaders accept).

        ``model`` is the DiT (the high-noise expert for Wan2.2 A14B, ``model_low`` the
        low-noise one). ``offload`` None means: offload on accelerators, not on CPU.
        ``text_cache``: the text encoder's embedding disk cache folder (False: memory only).
        """
        import wan_core

        dev = resolve_device(device)
        weights = resolve_dtype(dtype, dev)  # fp8 here = fp8 storage of the DiT's Linear weights
        cdtype = resolve_dtype(None, dev) if is_fp8(weights) else weights
        offload = dev.type != "cpu" if offload is None else offload
        home = torch.device("cpu") if offload else dev
        started = time.perf_counter()
        dit = _load_dit(model, home, weights, cdtype, attention)
        dit_low = _load_dit(model_low, home, weights, cdtype, attention) if model_low else None
        vae_model = wan_core.load_vae(vae, device=home, dtype=cdtype)
        te = wan_core.load_text_encoder(
            text_encoder, tokenizer=tokenizer, device=dev, dtype=cdtype, cache_dir=text_cache, keep_loaded=not offload
        )
        # CLIP-H (0.6 B) stays on the compute device: it cannot move, and it is small next to a 14B DiT
        clip = wan_core.load_clip_vision(clip_vision, device=dev, dtype=cdtype) if clip_vision else None
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

    def add_loras(self, specs: Sequence[Any]) -> None:
        """Apply ``wan_core.lora.LoraSpec`` entries (to both experts for A14B)."""
        from .lora import apply_lora_stack

        if not specs:
            return
        if self.dit_low is None:
            apply_lora_stack(self.dit, list(specs))
        else:
            apply_lora_stack(self.dit, list(specs), expert="high")
            apply_lora_stack(self.dit_low, list(specs), expert="low")
        for spec in specs:
            self.loras.append(
                {"file": _name_of(spec.path) or "<dict>", "strength": spec.strength, "strength_low": spec.strength_low}
            )

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
        **params: Any,
    ) -> GenerateResult:
        """Generate one video. ``prompt`` is a string (then ``params`` are GenerateParams fields)
        or a ready GenerateParams; images are float 0..1 tensors (see GenerateInputs)."""
        request = prompt if isinstance(prompt, GenerateParams) else _params(prompt, params)
        inputs = GenerateInputs(image, last_image, control_video, control_mask, reference_images)
        return self.run(request, inputs, hooks or NO_HOOKS)

    def run(self, request: GenerateParams, inputs: GenerateInputs, hooks: RunHooks) -> GenerateResult:
        """The whole pipeline: resolve defaults, encode text/images, sample, decode."""
        timings: dict[str, float] = {}
        request, inputs = check_generation(ModelFacts.of_pipeline(self), request, inputs, self.device)
        mode = choose_mode(self.dit.config, inputs)
        resolved = resolve_params(
            self.dit.config, self.vae.config, request, inputs, mode, two_experts=self.dit_low is not None
        )
        tick = time.perf_counter()
        positive, negative = self.encode_prompts(resolved["prompt"], resolved["negative_prompt"])
        clip_fea = self.encode_clip(mode, inputs)
        timings["encode_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        with on_device(self.vae, self.device, self.offload):
            cond = build_conditioning(
                mode, self.vae, inputs, resolved, clip_fea, int(getattr(self.dit.config, "extra_channels", 0) or 0)
            )
        validate(cond, self.dit.config, self.vae.config)
        latent = self.sample(positive, negative, cond, resolved, hooks)
        timings["sample_s"] = time.perf_counter() - tick
        tick = time.perf_counter()
        frames = self.decode(latent, hooks)
        timings["decode_s"] = time.perf_counter() - tick
        meta = {
            **resolved,
            "mode": mode,
            "variant": describe_variant(self.dit.config, self.dit_low.config if self.dit_low is not None else None),
            "experts": "high+low" if self.dit_low is not None else "single",
            "loras": list(self.loras),
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
        return GenerateResult(
            frames=frames, fps=float(resolved["fps"]), latent=latent.cpu(), params=meta, timings=timings
        )

    def encode_prompts(self, prompt: str, negative: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """umT5 embeddings: ([ [L_pos, D] ], [ [L_neg, D] ]) on the compute device."""
        with torch.no_grad():
            pos, neg = self.text_encoder.encode([prompt, negative])  # the encoder picks its own device
        if self.offload and hasattr(self.text_encoder, "release"):
            self.text_encoder.release()
        return [pos.to(self.device)], [neg.to(self.device)]

    def encode_clip(self, mode: str, inputs: GenerateInputs) -> torch.Tensor | None:
        """CLIP-H tokens [1, 257 | 514, width] for models with an image embedding, else None."""
        if not getattr(self.dit.config, "clip_dim", None) or inputs.image is None:
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

    def experts(self, resolved: dict[str, Any]) -> Any:
        """The DiT, or ``Experts(high, low, boundary)`` for Wan2.2 A14B (cfg pairs go in the settings).

        With ``offload`` the sampler keeps only the active expert on the device when memory is short.
        """
        if self.dit_low is None:
            return self.dit
        from .sampling import Experts

        return Experts(
            high=self.dit,
            low=self.dit_low,
            boundary=resolved.get("boundary"),
            offload="auto" if self.offload else "never",
        )

    def sample(
        self,
        positive: list[torch.Tensor],
        negative: list[torch.Tensor],
        cond: Any,
        resolved: dict[str, Any],
        hooks: RunHooks,
    ) -> torch.Tensor:
        """Run the sampler -> normalised latent [1, C, T, h, w] (VACE reference frames already trimmed).

        The sampler moves each DiT to the device when its steps start; with ``offload``
        they return to the CPU afterwards.
        """
        from .sampling import SamplerSettings, sample

        settings = SamplerSettings(
            steps=int(resolved["steps"]),
            shift=float(resolved["shift"]),
            cfg=resolved["cfg"],
            solver=str(resolved["solver"]),
            seed=int(resolved["seed"]),
        )
        try:
            return sample(self.experts(resolved), positive, negative, cond, settings, hooks=hooks, device=self.device)
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


def _load_dit(source: Any, device: torch.device, weights: torch.dtype, compute: torch.dtype, attention: str) -> Any:
    """A DiT on ``device`` with Linear weights in ``weights`` (fp8 files stay fp8), computing in ``compute``."""
    import wan_core

    dit = wan_core.load_dit(source, device=device, dtype=weights, attention=attention)
    if hasattr(dit, "set_compute_dtype"):
        dit.set_compute_dtype(compute)  # loaded on the CPU for offloading: keep the accelerator's dtype
    return dit


def _check_pair(dit: Any, dit_low: Any, vae: Any) -> None:
    """The experts must be one A14B pair (an A14B expert needs its partner); the VAE must fit the DiT."""
    check_model_set(dit.config, dit_low.config if dit_low is not None else None, vae.config)


def _params(prompt: Any, params: dict[str, Any]) -> GenerateParams:
    """GenerateParams from keyword arguments; an unknown name is an InputError listing the known ones."""
    known = set(GenerateParams.__dataclass_fields__)
    unknown = sorted(set(params) - known)
    if unknown:
        raise InputError(
            f"generate() got unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known - {'prompt'}))} "
            "and the inputs image, last_image, control_video, control_mask, reference_images."
        )
    return GenerateParams(prompt=prompt, **params)


# ---------------------------------------------------------------- decisions: mode, settings, conditioning

MODES = ("t2v", "i2v", "flf2v", "ti2v", "vace", "fun-control", "fun-inp")


def _given(inputs: Any) -> set[str]:
    return {name for name, value in vars(inputs).items() if value is not None}


def _reject(variant: str, given: set[str], allowed: set[str], hint: str) -> None:
    extra = sorted(given - allowed)
    if extra:
        raise ConditioningError(f"{variant} cannot use {', '.join(extra)} ({hint}).")


def model_kind(config: Any) -> str:
    """The DiT's task, with Fun models named as such (their task may read "i2v")."""
    variant = str(config.variant).lower()
    for fun in ("fun-control", "fun-inp"):
        if fun in variant or fun == str(config.task):
            return fun
    return str(config.task)


def choose_mode(config: Any, inputs: Any) -> str:
    """One of MODES for DiT ``config`` and the non-None fields of ``inputs`` (GenerateInputs)."""
    kind, given, variant = model_kind(config), _given(inputs), config.variant
    if kind == "t2v":
        _reject(variant, given, set(), "a text-to-video model: load an I2V/FLF2V/VACE/TI2V model for image inputs")
        return "t2v"
    if kind in ("i2v", "flf2v", "fun-inp"):
        _reject(variant, given, {"image", "last_image"}, "it takes a start image and optionally an end image")
        if "image" not in given:
            raise InputError(f"{variant} is an image-to-video model: give a start image (--image).")
        if kind == "flf2v" and "last_image" not in given:
            raise InputError(f"{variant} is a first-last-frame model: give --image and --last-image.")
        if kind == "fun-inp":
            return kind
        return "flf2v" if "last_image" in given else "i2v"
    if kind == "ti2v":
        _reject(variant, given, {"image"}, "TI2V-5B takes text and optionally a start image")
        return "ti2v"
    if kind == "vace":
        _reject(
            variant,
            given,
            {"control_video", "control_mask", "reference_images"},
            "VACE takes a control video, a mask and reference images; pass a start image as a reference",
        )
        return "vace"
    if kind == "fun-control":
        _reject(variant, given, {"control_video", "image"}, "Fun-Control takes a control video and a start image")
        if "control_video" not in given:
            raise InputError(f"{variant} is a Fun-Control model: give a control video (--control-video).")
        return kind
    raise ConditioningError(
        f"The standalone pipeline does not support {variant} (task {config.task!r}); "
        f"supported tasks: {', '.join(MODES)}."
    )


def defaults_family(config: Any, two_experts: bool) -> str:
    """Wan2.2 A14B T2V experts are key-identical to Wan2.1 T2V-14B: two experts mean Wan2.2 defaults."""
    return "wan2.2" if two_experts else str(config.family)


def _defaults(config: Any, two_experts: bool, width: int | None, height: int | None) -> Any:
    """Task defaults; a given size refines them (Wan2.1 I2V at 480p uses shift 3), else the model size does."""
    from .configs import defaults_for

    label = f"{width}*{height}" if width and height else getattr(config, "size_label", None)
    return defaults_for(defaults_family(config, two_experts), config.task, label)


def _negative(config: Any, given: str | None, two_experts: bool) -> str:
    if given:
        return given
    from .configs import default_negative_prompt

    return default_negative_prompt(defaults_family(config, two_experts), config.task)


def size_from_image(image: torch.Tensor, mode: str, area: int, vae_stride: int) -> tuple[int, int]:
    """(width, height) the official code derives from the input image [1, H, W, 3] and a pixel area.

    TI2V-5B: ``best_output_size`` (multiples of 32); I2V/FLF2V: ``lat = 2*floor(sqrt(area*a)/stride/2)``.
    """
    from .conditioning import best_output_size, official_i2v_size

    img_h, img_w = int(image.shape[1]), int(image.shape[2])
    if mode == "ti2v":
        return best_output_size(img_w, img_h, 2 * vae_stride, 2 * vae_stride, area)
    return official_i2v_size(img_h, img_w, area, stride=vae_stride)


def resolve_params(
    config: Any, vae_config: Any, request: Any, inputs: Any, mode: str, two_experts: bool = False
) -> dict[str, Any]:
    """GenerateParams with every None replaced by the task default; sizes checked.

    Returns a JSON-able dict (it becomes the video's metadata).
    """
    out = dict(asdict(request))
    base = _defaults(config, two_experts, out["width"], out["height"])
    for name in ("steps", "shift", "cfg", "solver", "frames", "fps"):
        if out[name] is None:
            out[name] = getattr(base, name)
    multiple = int(vae_config.spatial_stride) * 2
    if out["width"] is None or out["height"] is None:
        width, height = base.width, base.height
        if inputs.image is not None and mode in ("i2v", "flf2v", "ti2v", "fun-inp"):
            width, height = size_from_image(
                inputs.image, mode, base.width * base.height, int(vae_config.spatial_stride)
            )
        out["width"] = out["width"] or width
        out["height"] = out["height"] or height
    if out["seed"] is None:
        out["seed"] = random.SystemRandom().randrange(2**32)
    out["negative_prompt"] = _negative(config, out["negative_prompt"], two_experts)
    if isinstance(out["cfg"], list):
        out["cfg"] = tuple(out["cfg"])
    check_size(int(out["width"]), int(out["height"]), int(out["frames"]), multiple)
    return out


def _builder(name: str) -> Any:
    """``wan_core.conditioning.<name>`` (imported late: the package pulls in the VAE helpers)."""
    from . import conditioning

    return getattr(conditioning, name)


def build_conditioning(
    mode: str, vae: Any, inputs: Any, r: dict[str, Any], clip_fea: torch.Tensor | None, extra_channels: int = 0
) -> Any:
    """The Conditioning for ``mode`` (checked against the DiT by :func:`validate`)."""
    frames, width, height = int(r["frames"]), int(r["width"]), int(r["height"])
    if mode == "t2v":
        return _builder("t2v_conditioning")(vae.config.z_dim, frames, width, height, vae.config.spatial_stride)
    if mode == "i2v":
        return _builder("i2v_conditioning")(vae, inputs.image, frames, width, height, clip_fea=clip_fea)
    if mode == "flf2v":
        return _builder("flf2v_conditioning")(
            vae, inputs.image, inputs.last_image, frames, width, height, clip_fea=clip_fea
        )
    if mode == "fun-inp":
        return _builder("fun_inp_conditioning")(
            vae, inputs.image, inputs.last_image, frames, width, height, clip_fea=clip_fea
        )
    if mode == "ti2v":
        return _builder("ti2v_conditioning")(vae, inputs.image, frames, width, height)
    if mode == "vace":
        return _builder("vace_conditioning")(
            vae,
            frames,
            width,
            height,
            control_video=inputs.control_video,
            control_mask=inputs.control_mask,
            reference_images=inputs.reference_images,
            strength=r["vace_strength"],
        )
    return _builder("fun_control_conditioning")(
        vae,
        inputs.control_video,
        frames,
        width,
        height,
        start_image=inputs.image,
        clip_fea=clip_fea,
        model_extra_channels=extra_channels,
    )


def validate(cond: Any, dit_config: Any, vae_config: Any) -> None:
    """``wan_core.conditioning.validate_conditioning``: raises ConditioningError naming the fix."""
    _builder("validate_conditioning")(cond, dit_config, vae_config)
