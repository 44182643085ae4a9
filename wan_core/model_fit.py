"""Checks that need the model: which inputs it can use, whether experts pair up, how big a video it can make.

They run on configs only (DiT / VAE configs detected from file headers, or of loaded models), so
the CLI runs them before loading anything. Part of the validation pass (:mod:`wan_core.validation`).

Size bounds, and why:

* **Rotary positions.** The official Wan code precomputes rotary frequencies for 1024 positions per
  axis (frames, rows, columns of DiT patches), so a latent grid larger than that on any axis is
  refused: no released model was built for it and the official implementation cannot run it.
  That is 16384 px across with the Wan2.1 VAE (8 px x 2 patch per position), 4093 frames.
* **Memory.** A lower bound on the activations of one DiT block (tokens x (FFN width + 4 x model
  width) x bytes per element; the weights come on top) is compared with the free memory of the
  device; above it, the run cannot finish and is refused before loading.
* **Released sizes.** Above 1280x720 or 121 frames a warning says how much more attention work the
  run needs than the largest released setting (the cost grows with the square of the token count).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .conditioning.validate import check_vae
from .dit.config import check_pair
from .errors import ConditioningError, InputError, ResourceLimitError
from .validation import Names, check_input_file

log = logging.getLogger(__name__)

ROPE_POSITIONS = 1024  # per axis, as the official implementation precomputes them
RELEASED_MAX_AREA = 1280 * 720
RELEASED_MAX_FRAMES = 121
IMAGE_MIN_SIDE = 16  # px: less than two latent cells carries no usable picture
IMAGE_MAX_ASPECT = 4.0  # released sizes are 16:9 at most; beyond 4:1 a derived size is meaningless
UPSCALE_WARNING = 4.0
A14B_PAIR_TASKS = ("t2v", "i2v", "fun-control", "fun-camera")


@dataclass(frozen=True)
class ModelFacts:
    """What the validation pass needs to know about the loaded (or about to be loaded) models."""

    config: Any  # DiTConfig of --model (the high-noise expert of a pair)
    vae_config: Any
    low_config: Any = None
    has_clip_vision: bool = False
    lora_low: bool = False  # some LoRA has a separate low-noise strength

    @property
    def two_experts(self) -> bool:
        return self.low_config is not None

    @property
    def family(self) -> str:
        """The family whose official defaults apply (an expert pair is Wan2.2)."""
        from .dit.config import defaults_family

        return defaults_family(self.config, self.two_experts)

    @classmethod
    def of_pipeline(cls, pipe: Any) -> ModelFacts:
        """Facts of a :class:`wan_core.pipeline.WanPipeline` (its loaded models and applied LoRAs)."""
        return cls(
            config=pipe.dit.config,
            vae_config=pipe.vae.config,
            low_config=pipe.dit_low.config if pipe.dit_low is not None else None,
            has_clip_vision=pipe.clip_vision is not None,
            lora_low=any(spec.strength_low is not None for spec in pipe.models.loras),
        )


def inspect_files(files: Mapping[str, Any], tokenizer: Any = None, loras: Sequence[Any] = (), names: Any = None):
    """ModelFacts from file headers only (nothing is loaded): ``files`` maps model / model_low / vae /
    text_encoder / clip_vision to paths (or shard lists; None = not given). Unreadable or wrong files
    raise the loaders' own typed errors, named after the setting.
    """
    from .checkpoints import open_checkpoint
    from .dit.loader import detect_config as dit_config
    from .text.loader import load_text_encoder
    from .text.t5_keys import SPIECE_KEY
    from .vae.config import detect_config as vae_detect
    from .vae.loader import official_source as vae_source

    shown = names if names is not None else Names({})
    for key, value in files.items():
        if key in ("model", "model_low") and isinstance(value, (str, os.PathLike)) and Path(value).is_dir():
            continue  # an HF-style folder of shards: the checkpoint reader checks it
        for path in [] if value is None else value if isinstance(value, (list, tuple)) else [value]:
            check_input_file(path, key, shown)
    if tokenizer is not None and not Path(tokenizer).is_dir():
        check_input_file(tokenizer, "tokenizer", shown)
    src = vae_source(files["vae"])
    vae = vae_detect({k: src.shape(k) for k in src.keys()})
    text_source = open_checkpoint(files["text_encoder"])
    if tokenizer is not None and any(k.endswith(SPIECE_KEY) for k in text_source.keys()):
        raise InputError(
            f"The text encoder {Path(str(files['text_encoder'])).name} embeds its tokenizer, so "
            f"{shown('tokenizer')} would be ignored: remove {shown('tokenizer')}."
        )
    load_text_encoder(files["text_encoder"], tokenizer=tokenizer, device="cpu", cache_dir=False)  # lazy: header
    if files.get("clip_vision") is not None:
        from .vision.clip import ClipVisionConfig
        from .vision.clip_keys import to_official

        ClipVisionConfig.from_source(to_official(open_checkpoint(files["clip_vision"])))
    for spec in loras:
        open_checkpoint(spec.path)
    return ModelFacts(
        config=dit_config(files["model"]),
        vae_config=vae,
        low_config=dit_config(files["model_low"]) if files.get("model_low") is not None else None,
        has_clip_vision=files.get("clip_vision") is not None,
        lora_low=any(getattr(spec, "strength_low", None) is not None for spec in loras),
    )


def _name(names: Any, key: str) -> str:
    return names(key) if names is not None else key


# ---------------------------------------------------------------------------------------- models


def check_model_set(config: Any, low_config: Any, vae_config: Any, names: Any = None) -> None:
    """The experts must be one A14B pair; a Wan2.2 A14B expert needs its partner; the VAE must fit."""
    if low_config is not None:
        check_pair(config, low_config)
        if config.task not in A14B_PAIR_TASKS or config.size_label not in ("14b", None):
            raise InputError(
                f"{_name(names, 'model_low')} is for the two experts of Wan2.2 A14B (T2V, I2V, Fun); "
                f"{config.variant} is a single model: remove {_name(names, 'model_low')}."
            )
    elif is_a14b_expert(config):
        raise InputError(
            f"{config.variant} is one expert of a Wan2.2 A14B pair and needs its partner: pass the high-noise "
            f"expert as {_name(names, 'model')} and the low-noise one as {_name(names, 'model_low')}."
        )
    check_vae(config, vae_config)


def is_a14b_expert(config: Any) -> bool:
    """Wan2.2 DiTs other than TI2V-5B ship as high/low-noise pairs (T2V experts look like Wan2.1 T2V-14B)."""
    return config.family == "wan2.2" and config.task in A14B_PAIR_TASKS and config.size_label in ("14b", None)


def check_usable(facts: ModelFacts, request: Any, given: set[str], names: Any = None) -> None:
    """Refuse settings and files the chosen model would silently ignore."""
    cfg, variant = facts.config, facts.config.variant
    if facts.has_clip_vision and not getattr(cfg, "clip_dim", None):
        raise ConditioningError(
            f"{variant} has no image embedding, so the CLIP vision file would be ignored: remove "
            f"{_name(names, 'clip_vision')} (only Wan2.1 I2V / FLF2V / Fun models use it)."
        )
    if getattr(cfg, "clip_dim", None) and "image" in given and not facts.has_clip_vision:
        raise InputError(
            f"{variant} needs CLIP vision features of the start image: pass {_name(names, 'clip_vision')} "
            "clip_vision_h.safetensors."
        )
    if request.vace_strength not in (None, 1.0) and cfg.task != "vace":
        raise ConditioningError(
            f"{_name(names, 'vace_strength')} only applies to VACE models; {variant} is not one: remove it."
        )
    if facts.two_experts:
        return
    single = f"{variant} is a single model, not a Wan2.2 A14B expert pair"
    if isinstance(request.cfg, (tuple, list)):
        raise InputError(
            f"{_name(names, 'cfg')} got two scales (low-noise, high-noise experts) but {single}: give one number."
        )
    if request.boundary is not None:
        raise InputError(f"boundary switches between the two A14B experts but {single}: leave it unset.")
    if facts.lora_low:
        raise InputError(
            f"A LoRA has a second strength (for the low-noise A14B expert) but {single}: give one strength "
            f"({_name(names, 'lora')} PATH:STRENGTH)."
        )


# ---------------------------------------------------------------------------------------- sizes


def latent_grid(config: Any, vae_config: Any, width: int, height: int, frames: int) -> tuple[int, int, int]:
    """DiT patch positions (frames, rows, columns) of a video."""
    pt, ph, pw = tuple(getattr(config, "patch_size", (1, 2, 2)))
    t = (frames - 1) // int(vae_config.temporal_stride) + 1
    s = int(vae_config.spatial_stride)
    return t // pt, height // s // ph, width // s // pw


def activation_bytes(config: Any, tokens: int, element_bytes: int) -> int:
    """Lower bound of one DiT block's live activations: the FFN hidden state plus q, k, v and x."""
    width = int(getattr(config, "ffn_dim", 0) or 0) + 4 * int(getattr(config, "dim", 0) or 0)
    return tokens * width * element_bytes


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (None when unknown): the CUDA allocator's view, or MemAvailable on Linux."""
    from .devices import free_memory

    if device.type != "cpu":
        return free_memory(device)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_size_limits(
    config: Any, vae_config: Any, width: int, height: int, frames: int, device: torch.device, names: Any = None
) -> None:
    """Refuse sizes beyond the rotary position table or available memory; warn above released sizes."""
    grid = latent_grid(config, vae_config, width, height, frames)
    video = f"the video is {width}x{height}, {frames} frames"
    check_grid(config, grid, device, video, names)
    if width * height > RELEASED_MAX_AREA or frames > RELEASED_MAX_FRAMES:
        released = latent_grid(config, vae_config, 1280, 720, 81)
        factor = (_tokens(grid) / max(1, _tokens(released))) ** 2
        log.warning(
            "%dx%d with %d frames is above the released sizes (up to 1280x720, 81 frames; 121 for TI2V-5B): "
            "expect lower quality and about %.1fx the attention work of a 720p 81-frame run.",
            width,
            height,
            frames,
            factor,
        )


def _tokens(grid: tuple[int, int, int]) -> int:
    return grid[0] * grid[1] * grid[2]


def check_grid(
    config: Any, grid: tuple[int, int, int], device: torch.device, video: str, names: Any = None, batch: int = 1
) -> None:
    """The two hard bounds on a DiT patch grid (frames, rows, columns): rotary positions and memory."""
    for axis, count, setting in zip(("frames", "rows", "columns"), grid, ("frames", "height", "width")):
        if count > ROPE_POSITIONS:
            raise ResourceLimitError(
                f"{_name(names, setting)} gives {count} latent {axis}, but Wan's rotary position table has "
                f"{ROPE_POSITIONS} per axis (the official implementation cannot run it, no model was trained "
                f"near it): {video}; use at most 1280x720 and 81 frames (the released sizes)."
            )
    tokens = _tokens(grid) * batch
    element = 4 if device.type == "cpu" else 2
    need, free = activation_bytes(config, tokens, element), available_bytes(device)
    if free is not None and need > free:
        raise ResourceLimitError(
            f"{video[0].upper()}{video[1:]}: {tokens} tokens; one DiT block alone needs at least "
            f"{need / 2**30:.1f} GiB of activations but {device} has {free / 2**30:.1f} GiB free. Lower "
            f"{_name(names, 'size')} or {_name(names, 'frames')}."
        )


def check_latent_limits(config: Any, latent_shape: Sequence[int], device: torch.device, batch: int = 1) -> None:
    """:func:`check_grid` for a latent [C, T, h, w] (the sampler node's conditioning)."""
    pt, ph, pw = tuple(getattr(config, "patch_size", (1, 2, 2)))
    _c, t, h, w = (int(v) for v in latent_shape)
    check_grid(config, (t // pt, h // ph, w // pw), device, f"the latent is {t}x{h}x{w} (frames x h x w)", batch=batch)


def check_image_for_size(image: torch.Tensor, name: str, explicit_size: bool, names: Any = None) -> None:
    """A start/end image must carry a picture; with no size given its aspect decides the video's."""
    h, w = int(image.shape[-3]), int(image.shape[-2])
    if min(h, w) < IMAGE_MIN_SIDE:
        raise InputError(
            f"{_name(names, name)} is {w}x{h} pixels: too small to condition a video (at least "
            f"{IMAGE_MIN_SIDE} px per side); use a real picture."
        )
    aspect = max(w / h, h / w)
    if not explicit_size and aspect > IMAGE_MAX_ASPECT:
        raise InputError(
            f"{_name(names, name)} is {w}x{h} (aspect {aspect:.0f}:1); with no size given the video would take "
            f"that aspect, far beyond the released 16:9. Crop the image, or give {_name(names, 'size')} explicitly."
        )


def warn_upscale(image: torch.Tensor, name: str, width: int, height: int) -> None:
    h, w = int(image.shape[-3]), int(image.shape[-2])
    factor = max(width / w, height / h)
    if factor > UPSCALE_WARNING:
        log.warning("%s (%dx%d) is upscaled %.1fx to %dx%d: expect a blurry start.", name, w, h, factor, width, height)
