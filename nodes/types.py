"""Our own ComfyUI socket types and the small handles that travel through them.

Between our nodes: WAN_MODEL (one DiT, or the two Wan2.2 A14B experts, plus the
LoRAs to attach while sampling), WAN_VAE, WAN_TEXT_ENCODER, WAN_CLIP_VISION,
WAN_CLIP_EMBEDS, WAN_TEXT_EMBEDS, WAN_CONDITIONING, WAN_LORA_STACK, the sampler's
optional WAN_CACHE, WAN_GUIDANCE, WAN_SIGMAS and WAN_CONTEXT_WINDOWS settings, and WAN_CAMERA
(a camera trajectory). Towards
ComfyUI: IMAGE, MASK and LATENT in ComfyUI's own conventions (see convert.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wan_core.modelset import ModelSet

WAN_MODEL = "WAN_MODEL"
WAN_VAE = "WAN_VAE"
WAN_TEXT_ENCODER = "WAN_TEXT_ENCODER"
WAN_CLIP_VISION = "WAN_CLIP_VISION"
WAN_CLIP_EMBEDS = "WAN_CLIP_EMBEDS"
WAN_TEXT_EMBEDS = "WAN_TEXT_EMBEDS"
WAN_CONDITIONING = "WAN_CONDITIONING"
WAN_LORA_STACK = "WAN_LORA_STACK"
WAN_CACHE = "WAN_CACHE"  # step-cache settings (EasyCache / MagCache / TeaCache) for the sampler
WAN_GUIDANCE = "WAN_GUIDANCE"  # opt-in CFG options (CFG-Zero*, guidance step range)
WAN_SIGMAS = "WAN_SIGMAS"  # a custom sigma list
WAN_CONTEXT_WINDOWS = "WAN_CONTEXT_WINDOWS"
WAN_CAMERA = "WAN_CAMERA"

CATEGORY = "Wan video"


# What travels through a WAN_MODEL socket: one DiT or the A14B pair, plus the LoRAs to attach.
WanModelHandle = ModelSet


@dataclass(frozen=True)
class TextEmbeds:
    """Per-prompt umT5 embeddings, each [L_i, text_dim] float32; ``negative_text`` kept for metadata."""

    positive: list[torch.Tensor]
    negative: list[torch.Tensor]
    positive_text: str = ""
    negative_text: str = ""
