"""Text encode (positive + negative, official negative prompt when left empty) and CLIP-vision encode."""

from __future__ import annotations

import torch

from wan_core.budget import clip_run_bytes, text_run_bytes
from wan_core.configs import default_negative_prompt
from wan_core.modelset import ModelSet
from wan_core.text.loader import TextEncoder
from wan_core.text.tokenizer import MAX_TOKENS
from wan_core.vision.loader import ClipVision

from . import comfy_bridge as bridge
from .common import combo, socket, widget
from .convert import clip_pair_tokens
from .types import (
    CATEGORY,
    WAN_CLIP_EMBEDS,
    WAN_CLIP_VISION,
    WAN_MODEL,
    WAN_TEXT_EMBEDS,
    WAN_TEXT_ENCODER,
    TextEmbeds,
)


def _negative_for(model: ModelSet | None, negative: str) -> str:
    """The user's negative prompt, or the official one of the model's task (spec 7.5) when empty."""
    if negative.strip():
        return negative
    if model is None:
        return default_negative_prompt("wan2.1", "t2v")
    return default_negative_prompt(model.family, model.config.task)


class WanTextEncode:
    DESCRIPTION = (
        "Encodes the positive and negative prompts with umT5. An empty negative prompt uses the "
        "official one of the connected model's task. Results are cached per prompt."
    )
    CATEGORY = f"{CATEGORY}/conditioning"
    FUNCTION = "encode"
    RETURN_TYPES = (WAN_TEXT_EMBEDS,)
    RETURN_NAMES = ("text_embeds",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text_encoder": socket(WAN_TEXT_ENCODER, "The umT5 text encoder."),
                "positive": widget("STRING", "What the video should show.", multiline=True, default=""),
                "negative": widget(
                    "STRING",
                    "What to avoid; leave empty for the official negative prompt of the model's task.",
                    multiline=True,
                    default="",
                ),
            },
            "optional": {
                "model": socket(
                    WAN_MODEL,
                    "Optional: picks the task's official negative prompt (I2V/FLF2V "
                    "prefixes); without it the plain Wan negative prompt is used.",
                ),
            },
        }

    def encode(
        self, text_encoder: TextEncoder, positive: str, negative: str, model: ModelSet | None = None
    ) -> tuple[TextEmbeds]:
        negative = _negative_for(model, negative)
        where = bridge.placement("text", on_cpu=text_encoder.device.type == "cpu")
        host = bridge.model_host(lambda: text_run_bytes(text_encoder.config, 2, MAX_TOKENS, text_encoder.dtype), where)
        with bridge.comfy_errors():
            pos, neg = text_encoder.encode([positive, negative], host=host)
        return (TextEmbeds(positive=[pos], negative=[neg], positive_text=positive, negative_text=negative),)


class WanCLIPVisionEncode:
    DESCRIPTION = (
        "Encodes a start image (and optionally an end image, for FLF2V) with CLIP-H for Wan2.1 "
        "I2V / FLF2V / Fun models. Wan2.2 models take no CLIP features."
    )
    CATEGORY = f"{CATEGORY}/conditioning"
    FUNCTION = "encode"
    RETURN_TYPES = (WAN_CLIP_EMBEDS,)
    RETURN_NAMES = ("clip_embeds",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip_vision": socket(WAN_CLIP_VISION, "The CLIP-H vision encoder."),
                "image": socket("IMAGE", "The start image (the first frame of a batch is used)."),
                "crop": combo(["none", "center"], "none = official direct resize; center = crop to square first."),
            },
            "optional": {
                "end_image": socket("IMAGE", "FLF2V: the last frame; its tokens follow the start image's."),
            },
        }

    def encode(
        self, clip_vision: ClipVision, image: torch.Tensor, crop: str, end_image: torch.Tensor | None = None
    ) -> tuple[torch.Tensor]:
        images = image[:1] if end_image is None else torch.cat([image[:1], end_image[:1]], dim=0)
        bridge.use_models(
            [clip_vision.model], lambda: clip_run_bytes(clip_vision.config, len(images), clip_vision.dtype)
        )
        tokens = clip_vision.encode(images, crop=crop)
        return (clip_pair_tokens(tokens),)


NODE_CLASSES = {
    "WanCoreTextEncode": (WanTextEncode, "Wan Text Encode"),
    "WanCoreCLIPVisionEncode": (WanCLIPVisionEncode, "Wan CLIP Vision Encode"),
}
