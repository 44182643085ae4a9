"""The Wan sampler node: one model or the two Wan2.2 A14B experts, progress + previews + interrupt."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from wan_core.conditioning import validate_conditioning
from wan_core.lora import apply_lora_stack, remove_lora
from wan_core.model_fit import check_latent_limits
from wan_core.sampling import Experts, SamplerSettings, sample

from . import comfy_bridge as bridge
from .common import combo, socket, widget
from .convert import latent_from_comfy, latent_to_comfy
from .types import CATEGORY, WAN_CONDITIONING, WAN_MODEL, WAN_TEXT_EMBEDS, WanModelHandle

log = logging.getLogger(__name__)

SOLVERS = ["unipc", "dpm++", "euler"]


@contextlib.contextmanager
def attached_loras(model: WanModelHandle) -> Iterator[None]:
    """Attach the handle's LoRAs to its DiT(s) for the duration of one sampling call.

    Merged LoRAs keep a CPU copy of the weights they change, so removing them restores the
    cached model bit-exactly (subtracting would drift bf16/fp8 weights a little every run).
    """
    applied = []
    try:
        if model.loras:
            experts = [("high" if model.is_moe else None, model.high)]
            if model.is_moe:
                experts.append(("low", model.low))
            for expert, dit in experts:
                for report in apply_lora_stack(dit, list(model.loras), expert=expert, keep_original=True):
                    applied.append((dit, report))
        yield
    finally:
        for dit, report in reversed(applied):
            remove_lora(dit, report)


def _sampling_target(model: WanModelHandle, cfg: float, cfg_low: float, boundary: float):
    if not model.is_moe:
        return model.high
    return Experts(
        high=model.high,
        low=model.low,
        boundary=boundary * 1000.0 if boundary > 0 else None,
        cfg_high=cfg,
        cfg_low=cfg if cfg_low < 0 else cfg_low,
    )


class WanSampler:
    DESCRIPTION = (
        "Samples a Wan video latent (flow matching; UniPC / DPM++ / Euler). With two experts "
        "(Wan2.2 A14B) one run switches from the high-noise to the low-noise expert at the boundary. "
        "Shows progress and live previews; honours the interrupt button. Outputs a ComfyUI LATENT "
        "(raw VAE mean), so native VAE Decode works on it too."
    )
    CATEGORY = f"{CATEGORY}/sampling"
    FUNCTION = "run"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": socket(WAN_MODEL, "The Wan model (or A14B expert pair)."),
                "text_embeds": socket(WAN_TEXT_EMBEDS, "Positive and negative prompt embeddings."),
                "conditioning": socket(WAN_CONDITIONING, "From an empty-latent / image-to-video / VACE / Fun node."),
                "seed": widget(
                    "INT",
                    "Noise seed (CPU generator: same video on any device).",
                    default=0,
                    min=0,
                    max=0xFFFFFFFFFFFFFFFF,
                    control_after_generate=True,
                ),
                "steps": widget(
                    "INT", "Sampling steps (official: 50 for T2V, 40 for I2V / A14B).", default=30, min=1, max=200
                ),
                "cfg": widget(
                    "FLOAT",
                    "Guidance scale (the high-noise expert's for A14B); 1 = no negative pass.",
                    default=5.0,
                    min=0.0,
                    max=30.0,
                    step=0.1,
                ),
                "cfg_low_noise": widget(
                    "FLOAT",
                    "A14B: guidance of the low-noise expert; -1 = same as cfg.",
                    default=-1.0,
                    min=-1.0,
                    max=30.0,
                    step=0.1,
                ),
                "shift": widget(
                    "FLOAT",
                    "Sigma shift s: sigma' = s*sigma / (1 + (s-1)*sigma). Official: 5 (T2V), "
                    "3 (I2V 480p), 12 (A14B T2V), 16 (FLF2V, VACE).",
                    default=5.0,
                    min=0.0,
                    max=100.0,
                    step=0.1,
                ),
                "solver": combo(SOLVERS, "unipc = official default; dpm++ = official alternative; euler = simple."),
                "denoise": widget(
                    "FLOAT",
                    "Fraction of the schedule to run; < 1 needs an init latent (V2V).",
                    default=1.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                ),
                "moe_boundary": widget(
                    "FLOAT",
                    "A14B: switch to the low-noise expert when t/1000 falls below this; "
                    "0 = official (0.875 T2V, 0.9 I2V).",
                    default=0.0,
                    min=0.0,
                    max=1.0,
                    step=0.005,
                ),
                "batch_size": widget("INT", "Videos per run (seeds seed, seed+1, ...).", default=1, min=1, max=64),
            },
            "optional": {
                "latent": socket("LATENT", "Init latent for denoise < 1 (e.g. from Wan VAE Encode)."),
            },
        }

    def run(
        self,
        model,
        text_embeds,
        conditioning,
        seed,
        steps,
        cfg,
        cfg_low_noise,
        shift,
        solver,
        denoise,
        moe_boundary,
        batch_size,
        latent=None,
    ):
        validate_conditioning(conditioning, model.config)
        check_latent_limits(model.config, conditioning.latent_shape, bridge.compute_device(), batch_size)
        if latent is not None and denoise < 1.0:
            conditioning = conditioning.with_(init_latent=latent_from_comfy(latent)[:1])
        settings = SamplerSettings(
            steps=steps, shift=shift, cfg=cfg, solver=solver, seed=seed, batch_size=batch_size, denoise=denoise
        )
        target = _sampling_target(model, cfg, cfg_low_noise, moe_boundary)
        hooks, close = bridge.make_hooks(steps)
        try:
            with bridge.comfy_errors(), attached_loras(model), torch.inference_mode():
                z = sample(
                    target,
                    text_embeds.positive,
                    text_embeds.negative,
                    conditioning,
                    settings,
                    hooks=hooks,
                    device=bridge.compute_device(),
                )
        finally:
            close()
        return (latent_to_comfy(z),)


NODE_CLASSES = {"WanCoreSampler": (WanSampler, "Wan Sampler")}
