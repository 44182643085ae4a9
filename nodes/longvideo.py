"""Long-video nodes: context-window options for the sampler, and continuing a finished video."""

from __future__ import annotations

import torch

from wan_core.conditioning import continuation_conditioning, join_continuation
from wan_core.sampling.windows import BLENDS, IMAGE_MODES, POSITIONS, SCHEDULES, ContextWindows

from . import comfy_bridge as bridge
from .common import combo, frames_widget, socket, use_vae, widget
from .sampling import WanSampler
from .text import WanCLIPVisionEncode
from .types import (
    CATEGORY,
    WAN_CAMERA,
    WAN_CLIP_VISION,
    WAN_CONTEXT_WINDOWS,
    WAN_MODEL,
    WAN_TEXT_EMBEDS,
    WAN_VAE,
)
from .video import WanVAEDecode

_CAT = f"{CATEGORY}/long video"


class WanContextWindows:
    DESCRIPTION = (
        "Context windows for the Wan Sampler: a video longer than the model's trained 81 frames is "
        "sampled in overlapping windows of latent frames whose results are blended every step."
    )
    CATEGORY = _CAT
    FUNCTION = "build"
    RETURN_TYPES = (WAN_CONTEXT_WINDOWS,)
    RETURN_NAMES = ("context_windows",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "context_length": widget(
                    "INT",
                    "Window length in LATENT frames (21 = 81 video frames, the trained length).",
                    default=21,
                    min=1,
                    max=256,
                ),
                "context_overlap": widget(
                    "INT",
                    "Latent frames shared by neighbouring windows (blended); less than context_length.",
                    default=6,
                    min=0,
                    max=255,
                ),
                "schedule": combo(
                    list(SCHEDULES),
                    "uniform: windows shift between steps (hides seams); static: fixed windows; looped: "
                    "windows wrap around the end (seamless loop); batched: no overlap.",
                ),
                "blend": combo(list(BLENDS), "linear: ramps over the overlap; pyramid: weights peak mid-window."),
                "positions": combo(
                    list(POSITIONS),
                    "RoPE positions per window: real frame indices, or 0.. in every window (differs only when "
                    "a window's frames are not consecutive: start image / VACE references joined).",
                ),
                "image": combo(
                    list(IMAGE_MODES),
                    "I2V / TI2V / Fun-Camera: the start image conditions the first window only, or joins every "
                    "window as its first frame.",
                ),
                "freenoise": widget(
                    "BOOLEAN", "FreeNoise: later windows start from shuffled noise of earlier ones.", default=False
                ),
            }
        }

    def build(self, context_length, context_overlap, schedule, blend, positions, image, freenoise):
        with bridge.comfy_errors():
            options = ContextWindows(
                length=context_length,
                overlap=context_overlap,  # overlap >= length: ContextWindows says so (was clamped silently)
                schedule=schedule,
                blend=blend,
                positions=positions,
                image=image,
                freenoise=freenoise,
            )
        return (options,)


class WanExtendVideo:
    DESCRIPTION = (
        "Continues a finished video: its last overlap_frames frames start a new run (I2V, VACE, TI2V-5B or "
        "Fun-Camera model), the new clip is colour-matched to the old one and the joined video is returned "
        "(previous frames + length - overlap_frames). Chain several for long videos."
    )
    CATEGORY = _CAT
    FUNCTION = "extend"
    RETURN_TYPES = ("IMAGE", "IMAGE")
    RETURN_NAMES = ("joined", "new_frames")

    @classmethod
    def INPUT_TYPES(cls):
        sampler = WanSampler.INPUT_TYPES()["required"]
        return {
            "required": {
                "model": socket(WAN_MODEL, "An I2V, VACE, TI2V-5B or Fun-Camera model (it takes known frames)."),
                "text_embeds": socket(WAN_TEXT_EMBEDS, "Prompt embeddings of the new part."),
                "vae": socket(WAN_VAE, "The Wan VAE of the model."),
                "video": socket("IMAGE", "The video to continue (its size is the new run's size)."),
                "overlap_frames": widget(
                    "INT", "Last frames of the video that start the new run.", default=9, min=1, max=1024
                ),
                "length": frames_widget(81),
                "seed": sampler["seed"],
                "steps": sampler["steps"],
                "cfg": sampler["cfg"],
                "shift": sampler["shift"],
                "solver": sampler["solver"],
                "color_match": widget(
                    "FLOAT",
                    "Match the new clip's colour and brightness to the shared frames (0 = off, 1 = full).",
                    default=1.0,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                ),
            },
            "optional": {
                "clip_vision": socket(
                    WAN_CLIP_VISION, "Wan2.1 I2V / Fun-Camera: CLIP-H, to encode the first shared frame."
                ),
                "camera": socket(WAN_CAMERA, "Fun-Camera models: the camera move of the new part."),
                "context_windows": socket(WAN_CONTEXT_WINDOWS, "Sample the new part in context windows."),
            },
        }

    def extend(
        self,
        model,
        text_embeds,
        vae,
        video,
        overlap_frames,
        length,
        seed,
        steps,
        cfg,
        shift,
        solver,
        color_match,
        clip_vision=None,
        camera=None,
        context_windows=None,
    ):
        height, width = int(video.shape[1]), int(video.shape[2])
        clip = None
        if clip_vision is not None:
            clip = WanCLIPVisionEncode().encode(clip_vision, video[-overlap_frames:][:1], "none")[0]
        use_vae(vae, length, height, width)
        with bridge.comfy_errors(), torch.inference_mode():
            cond = continuation_conditioning(
                vae, model.config, video, overlap_frames, length, width, height, clip_fea=clip, trajectory=camera
            )
        latent = WanSampler().run(
            model=model,
            text_embeds=text_embeds,
            conditioning=cond,
            seed=seed,
            steps=steps,
            cfg=cfg,
            cfg_low_noise=-1.0,
            shift=shift,
            solver=solver,
            denoise=1.0,
            moe_boundary=0.0,
            batch_size=1,
            context_windows=context_windows,
        )["result"][0]
        new = WanVAEDecode().decode(vae=vae, latent=latent, tiled=False, tile_size=256, tile_overlap=64)[0]
        with bridge.comfy_errors():
            joined, matched = join_continuation(video, new, overlap_frames, color_match)
        return (joined, matched[overlap_frames:])


NODE_CLASSES = {
    "WanCoreContextWindows": (WanContextWindows, "Wan Context Windows"),
    "WanCoreExtendVideo": (WanExtendVideo, "Wan Extend Video"),
}
