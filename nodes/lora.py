"""LoRA nodes: a chainable stack (strength, per-expert strength, merged / on the fly) and "apply to model".

Applying only records the LoRAs on the model handle; the sampler attaches them just
before sampling and removes them afterwards, so the cached model stays unchanged.
"""

from __future__ import annotations

import re

from wan_core.errors import InputError
from wan_core.lora import LoraSpec
from wan_core.modelset import ModelSet

from . import comfy_bridge as bridge
from .common import combo, model_combo, socket, widget, with_ui_text
from .types import CATEGORY, WAN_LORA_STACK, WAN_MODEL

_CAT = f"{CATEGORY}/lora"
MODES = ["runtime", "merge"]


def parse_blocks(text: str) -> tuple[int, ...] | str | None:
    """'' -> None (all); '0-9,12' -> block indices; anything else -> a regex on parameter names."""
    text = text.strip()
    if not text:
        return None
    if not re.fullmatch(r"[\d\s,-]+", text):
        return text
    indices: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, sep, hi = part.partition("-")
        if not lo.strip().isdigit() or (sep and not hi.strip().isdigit()):
            raise InputError(f"LoRA block filter {text!r}: {part!r} is not N or N-M; write e.g. '0-9,12'.")
        indices.update(range(int(lo), int(hi or lo) + 1))
    return tuple(sorted(indices))


class WanLoraStack:
    DESCRIPTION = (
        "Adds a LoRA to a stack (chain several). strength_low_noise is used on the Wan2.2 A14B "
        "low-noise expert (-1 = same as strength). runtime = low-rank adapters added on the fly "
        "(works with fp8 weights); merge = added into the weights for the run, then removed."
    )
    CATEGORY = _CAT
    FUNCTION = "stack"
    RETURN_TYPES = (WAN_LORA_STACK,)
    RETURN_NAMES = ("lora_stack",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "lora_name": model_combo("loras", "LoRA file from models/loras (any common Wan LoRA format)."),
                "strength": widget(
                    "FLOAT",
                    "LoRA strength (on the only / the high-noise expert).",
                    default=1.0,
                    min=-10.0,
                    max=10.0,
                    step=0.01,
                ),
                "strength_low_noise": widget(
                    "FLOAT",
                    "Strength on the A14B low-noise expert; -1 = same as strength.",
                    default=-1.0,
                    min=-10.0,
                    max=10.0,
                    step=0.01,
                ),
                "mode": combo(
                    MODES,
                    "runtime = adapters on the fly; merge = merged into the weights for the run (a CPU copy of the "
                    "changed weights restores them exactly afterwards).",
                ),
                "blocks": widget(
                    "STRING",
                    "Optional filter: block indices like '0-9,12', or a regex on parameter names; empty = all.",
                    default="",
                ),
            },
            "optional": {"lora_stack": socket(WAN_LORA_STACK, "A previous stack to extend.")},
        }

    def stack(
        self,
        lora_name: str,
        strength: float,
        strength_low_noise: float,
        mode: str,
        blocks: str,
        lora_stack: tuple[LoraSpec, ...] | None = None,
    ) -> tuple[tuple[LoraSpec, ...]]:
        spec = LoraSpec(
            path=bridge.model_path("loras", lora_name),
            strength=strength,
            strength_low=None if strength_low_noise == -1.0 else strength_low_noise,
            mode=mode,
            blocks=parse_blocks(blocks),
        )
        return (tuple(lora_stack or ()) + (spec,),)


class WanApplyLoraStack:
    DESCRIPTION = "Attaches a LoRA stack to a Wan model (applied while sampling; the loaded model is not changed)."
    CATEGORY = _CAT
    FUNCTION = "apply"
    RETURN_TYPES = (WAN_MODEL,)
    RETURN_NAMES = ("model",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": socket(WAN_MODEL, "The Wan model."),
                "lora_stack": socket(WAN_LORA_STACK, "LoRAs to attach."),
            }
        }

    def apply(self, model: ModelSet, lora_stack: tuple[LoraSpec, ...]) -> dict:
        handle = model.with_loras(tuple(lora_stack))
        return with_ui_text(f"{len(handle.loras)} LoRA(s)", handle)


NODE_CLASSES = {
    "WanCoreLoraStack": (WanLoraStack, "Wan LoRA Stack"),
    "WanCoreApplyLoraStack": (WanApplyLoraStack, "Wan Apply LoRA Stack"),
}
