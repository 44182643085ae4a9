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

from wan_core.dit.config import describe_variant

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
        """The loader badge: the detected variant, or the Wan2.2 expert pair's name.

        Only Wan2.2 (A14B) ships high/low-noise expert pairs, but its T2V experts have exactly the keys
        and shapes of Wan2.1 T2V-14B, so the DiT alone reports wan2.1-t2v-14b: with a low-noise expert
        the pair is named from the task and size instead (e.g. wan2.2-t2v-a14b).
        """
        if self.low is None:
            return describe_variant(self.high.config)
        return f"{describe_variant(self.high.config, self.low.config)} (high + low noise experts)"


@dataclass(frozen=True)
class TextEmbeds:
    """Per-prompt umT5 embeddings, each [L_i, text_dim] float32; ``negative_text`` kept for metadata."""

    positive: list[torch.Tensor]
    negative: list[torch.Tensor]
    positive_text: str = ""
    negative_text: str = ""
