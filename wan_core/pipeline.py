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
take the official per-task defaults (``wan_core.configs.defaults_for``); what a request is and how it
is resolved lives in :mod:`wan_core.request`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch

from .checkpoints import CheckpointInput
from .conditioning import (
    CameraTrajectory,
    Conditioning,
    check_vae,
    validate_conditioning,
)
from .devices import compute_dtype_for, empty_cache, resolve_device, resolve_dtype
from .dit.config import ambiguity_note, describe_variant
from .dit.model import WanDiT
from .errors import InputError
from .lora import LoraSpec
from .memory import move, on_device
from .model_fit import ModelFacts
from .modelset import ModelSet
from .progress import NO_HOOKS, RunHooks
from .request import (
    GenerateInputs,
    GenerateParams,
    ResolvedParams,
    build_conditioning,
    choose_mode,
    params_from_keywords,
    resolve_params,
)
from .request_checks import check_generation
from .sampling import Experts, SamplerSettings, sample
from .sampling.model import DiTLike
from .text.loader import TextEncoder
from .vae.model import WanVAE
from .vision.loader import ClipVision

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


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
        request = prompt if isinstance(prompt, GenerateParams) else params_from_keywords(prompt, params)
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
