"""Our own ComfyUI socket types and the small handles that travel through them.

Between our nodes: WAN_MODEL (one DiT, or the two Wan2.2 A14B experts, plus the
LoRAs to attach while sampling), WAN_VAE, WAN_TEXT_ENCODER, WAN_CLIP_VISION,
WAN_CLIP_EMBEDS, WAN_TEXT_EMBEDS, WAN_CONDITIONING, WAN_LORA_STACK. Towards
ComfyUI: IMAGE, MASK and LATENT in ComfyUI's own conventions (see convert.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

WAN_MODEL = "WAN_MODEL"
WAN_VAE = "WAN_VAE"
WAN_TEXT_ENCODER = "WAN_TEXT_ENCODER"
WAN_CLIP_VISION = "WAN_CLIP_VISION"
WAN_CLIP_EMBEDS = "WAN_CLIP_EMBEDS"
WAN_TEXT_EMBEDS = "WAN_TEXT_EMBEDS"
WAN_CONDITIONING = "WAN_CONDITIONING"
WAN_LORA_STACK = "WAN_LORA_STACK"

CATEGORY = "Wan video"


@dataclass(frozen=True)
class WanModelHandle:
    """A loaded DiT (``high``), the optional Wan2.2 A14B low-noise expert, and LoRAs to attach.

    The DiTs are shared with ComfyUI's output cache and are never modified
    permanently: LoRAs are attached by the sampler and removed afterwards.
    """

    high: Any
    low: Any | None = None
    loras: tuple[Any, ...] = field(default_factory=tuple)

    @property
    def config(self):
        return self.high.config

    @property
    def is_moe(self) -> bool:
        return self.low is not None

    def with_loras(self, specs: tuple[Any, ...]) -> WanModelHandle:
        return replace(self, loras=self.loras + tuple(specs))

    def describe(self) -> str:
        if self.low is None:
            return self.high.config.variant
        return f"{self.high.config.variant} (high) + {self.low.config.variant} (low)"


@dataclass(frozen=True)
class TextEmbeds:
    """Per-prompt umT5 embeddings, each [L_i, text_dim] float32; ``negative_text`` kept for metadata."""

    positive: list[torch.Tensor]
    negative: list[torch.Tensor]
    positive_text: str = ""
    negative_text: str = ""
