"""The Wan sampler node: one model or the two Wan2.2 A14B experts, progress + previews + interrupt."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from functools import cache as once
from functools import partial

import torch

from wan_core.budget import sampling_run_bytes
from wan_core.conditioning import Conditioning, validate_conditioning
from wan_core.model_fit import check_latent_limits
from wan_core.modelset import ModelSet
from wan_core.progress import RunHooks
from wan_core.sampling import Experts, SamplerSettings, sample
from wan_core.sampling.cache import CacheSettings, StepReport
from wan_core.sampling.guidance import GuidanceOptions
from wan_core.sampling.model import DiTLike
from wan_core.sampling.windows import ContextWindows

from . import comfy_bridge as bridge
from .common import combo, socket, widget
from .convert import latent_from_comfy, latent_to_comfy
from .types import (
    CATEGORY,
    WAN_CACHE,
    WAN_CONDITIONING,
    WAN_CONTEXT_WINDOWS,
    WAN_GUIDANCE,
    WAN_MODEL,
    WAN_SIGMAS,
    WAN_TEXT_EMBEDS,
    TextEmbeds,
)

log = logging.getLogger(__name__)

SOLVERS = ["unipc", "dpm++", "euler"]
# The sampler's UI output: one mark per step (R ran the DiT, P partly, C cached, Z zero-init), drawn by js/
DIT_STEPS_KEY = "wan_dit_steps"


def sampler_inputs(
    model: ModelSet,
    seed: int,
    steps: int,
    cfg: float,
    cfg_low_noise: float,
    shift: float,
    solver: str,
    denoise: float,
    moe_boundary: float,
    batch_size: int,
    *,
    sigmas: Sequence[float] | None = None,
    cache: CacheSettings | None = None,
    guidance: GuidanceOptions | None = None,
    context_windows: ContextWindows | None = None,
) -> tuple[DiTLike | Experts, SamplerSettings]:
    """The widgets in wan_core's conventions: the sampling target and the settings.

    cfg_low_noise -1 means "same as cfg" (and is ignored for one DiT); a pair becomes the
    settings' (low_noise, high_noise) cfg. moe_boundary 0 means "the official boundary".
    ``sigmas`` / ``cache`` / ``guidance`` / ``context_windows`` come from the optional sockets
    (custom schedule, step cache, CFG options, long-video windows).
    """
    scale: float | tuple[float, float] = cfg
    if model.is_pair and cfg_low_noise >= 0.0:
        scale = (cfg_low_noise, cfg)
    settings = SamplerSettings(
        steps=steps,
        shift=shift,
        cfg=scale,
        solver=solver,
        seed=seed,
        batch_size=batch_size,
        denoise=denoise,
        sigmas=sigmas,
        cache=cache,
        guidance=guidance,
        context_windows=context_windows,
    )
    return model.sampling_target(boundary=moe_boundary if moe_boundary > 0.0 else None), settings


def _run_bytes(model: ModelSet, conditioning: Conditioning, settings: SamplerSettings) -> int:
    """Device memory one step needs besides the weights (batched guidance doubles the batch)."""
    guided = any(settings.cfg_for(high) != 1.0 for high in (True, False)) and settings.batch_cfg
    batch = settings.batch_size * (2 if guided else 1)
    loras = sum(os.path.getsize(spec.path) for spec in model.loras if os.path.isfile(spec.path))
    return sampling_run_bytes(model.high, conditioning.latent_shape, batch, loras)


class _StepClock:
    """Times each step through the progress hook, for one log line per run (the speed at a glance)."""

    def __init__(self, hooks: RunHooks) -> None:
        self.stamps = [time.perf_counter()]
        self._progress = hooks.progress
        self.hooks = dataclasses.replace(hooks, progress=self._tick)

    def _tick(self, step: int, total: int, preview: torch.Tensor | None) -> None:
        self.stamps.append(time.perf_counter())
        if self._progress is not None:
            self._progress(step, total, preview)

    def log(self) -> None:
        times = [b - a for a, b in zip(self.stamps, self.stamps[1:])]
        if times:
            per_step = ", ".join(f"{t:.2f}" for t in times)
            log.info("Wan Sampler: %d steps in %.2f s (per step: %s s)", len(times), sum(times), per_step)


class WanSampler:
    DESCRIPTION = (
        "Samples a Wan video latent (flow matching; UniPC / DPM++ / Euler). With two experts "
        "(Wan2.2 A14B) one run switches from the high-noise to the low-noise expert at the boundary. "
        "Shows progress and live previews; honours the interrupt button. Outputs a ComfyUI LATENT "
        "(raw VAE mean), so native VAE Decode works on it too. Optional: a step cache, CFG options and a "
        "custom sigma list; the marks under the sigma plot show which steps ran the DiT."
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
                "cache": socket(WAN_CACHE, "Step cache (Wan EasyCache / MagCache / TeaCache): fewer DiT calls."),
                "guidance": socket(WAN_GUIDANCE, "CFG options (Wan CFG Options): CFG-Zero*, guidance step range."),
                "sigmas": socket(WAN_SIGMAS, "Custom sigma list (Wan Custom Sigmas); replaces steps/shift/denoise."),
                "context_windows": socket(
                    WAN_CONTEXT_WINDOWS, "Sample in overlapping windows along time (long videos): Wan Context Windows."
                ),
            },
        }

    def run(
        self,
        model: ModelSet,
        text_embeds: TextEmbeds,
        conditioning: Conditioning,
        seed: int,
        steps: int,
        cfg: float,
        cfg_low_noise: float,
        shift: float,
        solver: str,
        denoise: float,
        moe_boundary: float,
        batch_size: int,
        latent: dict | None = None,
        cache: CacheSettings | None = None,
        guidance: GuidanceOptions | None = None,
        sigmas: Sequence[float] | None = None,
        context_windows: ContextWindows | None = None,
    ) -> dict:
        validate_conditioning(conditioning, model.config)
        check_latent_limits(model.config, conditioning.latent_shape, bridge.compute_device(), batch_size)
        if latent is not None and denoise < 1.0:
            conditioning = conditioning.with_(init_latent=latent_from_comfy(latent)[:1])
        target, settings = sampler_inputs(
            model,
            seed,
            steps,
            cfg,
            cfg_low_noise,
            shift,
            solver,
            denoise,
            moe_boundary,
            batch_size,
            sigmas=sigmas,
            cache=cache,
            guidance=guidance,
            context_windows=context_windows,
        )
        run_bytes = once(partial(_run_bytes, model, conditioning, settings))  # asked (once) only inside ComfyUI
        reports: list[StepReport] = []
        hooks, close = bridge.make_hooks(steps if sigmas is None else len(sigmas) - 1)
        hooks.on_report = reports.append
        clock = _StepClock(hooks)
        try:
            with bridge.comfy_errors():
                bridge.use_models([model.high], run_bytes)  # before the LoRAs attach: merges then happen in place
            with bridge.comfy_errors(), model.attached_loras(), torch.inference_mode():
                z = sample(
                    target,
                    text_embeds.positive,
                    text_embeds.negative,
                    conditioning,
                    settings,
                    hooks=clock.hooks,
                    device=bridge.compute_device(),
                    host=bridge.model_host(run_bytes),  # ComfyUI's manager loads each expert for its steps
                )
        finally:
            close()
        clock.log()
        marks = reports[-1].marks if reports else ""
        return {"ui": {DIT_STEPS_KEY: [marks]}, "result": (latent_to_comfy(z),)}


NODE_CLASSES = {"WanCoreSampler": (WanSampler, "Wan Sampler")}
