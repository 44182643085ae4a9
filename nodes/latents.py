"""Latent / conditioning nodes: empty video latent, I2V, FLF2V, TI2V-5B, VACE, Fun-Control, Fun-InP.

Each validates its sizes through wan_core, calls one builder of
``wan_core.conditioning`` and returns WAN_CONDITIONING for the Wan sampler.
The builders take ComfyUI-style IMAGE / MASK tensors directly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from wan_core import conditioning as wc
from wan_core.conditioning import Conditioning
from wan_core.conditioning.image import ResizeMode
from wan_core.modelset import ModelSet
from wan_core.vae.model import WanVAE

from . import comfy_bridge as bridge
from .common import combo, frames_widget, size_widget, socket, use_vae, widget
from .types import CATEGORY, WAN_CLIP_EMBEDS, WAN_CONDITIONING, WAN_MODEL, WAN_VAE

_CAT = f"{CATEGORY}/conditioning"
RESIZE = ["official", "crop"]


def _size_inputs(width: int = 832, height: int = 480, frames: int = 81, multiple: int = 16) -> dict:
    return {
        "vae": socket(WAN_VAE, "The Wan VAE (decides the latent channels and stride: Wan2.1 z16 /8, Wan2.2 z48 /16)."),
        "width": size_widget("width", width, multiple),
        "height": size_widget("height", height, multiple),
        "length": frames_widget(frames),
    }


def _clip_input() -> tuple:
    return socket(WAN_CLIP_EMBEDS, "CLIP-H features (Wan2.1 I2V/FLF2V/Fun); leave unconnected for Wan2.2.")


class _ConditioningNode:
    CATEGORY = _CAT
    FUNCTION = "build"
    RETURN_TYPES = (WAN_CONDITIONING,)
    RETURN_NAMES = ("conditioning",)
    make: Callable[..., Conditioning]  # each node's builder call, with its own inputs

    def build(self, **kwargs: object) -> tuple[Conditioning]:
        vae = kwargs.get("vae")
        if isinstance(vae, WanVAE):  # ComfyUI's manager loads the VAE for the images it encodes
            frames, height, width = (int(kwargs.get(k, 1)) for k in ("length", "height", "width"))  # type: ignore[arg-type]
            use_vae(vae, frames, height, width)
        with bridge.comfy_errors(), torch.inference_mode():
            return (self.make(**kwargs),)


class WanEmptyVideoLatent:
    DESCRIPTION = (
        "Text-to-video: an empty latent of the right shape for the connected VAE (16 channels /8 for "
        "Wan2.1, 48 channels /16 for Wan2.2). Also outputs a ComfyUI LATENT (zeros) for native nodes."
    )
    CATEGORY = _CAT
    FUNCTION = "build"
    RETURN_TYPES = (WAN_CONDITIONING, "LATENT")
    RETURN_NAMES = ("conditioning", "latent")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": _size_inputs()}

    def build(self, vae: WanVAE, width: int, height: int, length: int) -> tuple[Conditioning, dict]:
        cfg = vae.config
        cond = wc.t2v_conditioning(cfg.z_dim, length, width, height, cfg.spatial_stride)
        return (cond, {"samples": torch.zeros((1, *cond.latent_shape))})


class WanImageToVideo(_ConditioningNode):
    DESCRIPTION = (
        "Image-to-video (Wan2.1 I2V with CLIP features, Wan2.2 I2V-A14B without): the start image "
        "becomes the first frame; mask and condition latent as in the official code."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **_size_inputs(),
                "start_image": socket("IMAGE", "The first frame (first image of a batch)."),
                "resize": combo(RESIZE, "official = bicubic resize to the size; crop = keep aspect, center-crop."),
            },
            "optional": {"clip_embeds": _clip_input()},
        }

    def make(
        self,
        vae: WanVAE,
        width: int,
        height: int,
        length: int,
        start_image: torch.Tensor,
        resize: ResizeMode,
        clip_embeds: torch.Tensor | None = None,
    ) -> Conditioning:
        return wc.i2v_conditioning(vae, start_image[:1], length, width, height, clip_fea=clip_embeds, resize=resize)


class WanFirstLastFrameToVideo(_ConditioningNode):
    DESCRIPTION = "First-last-frame-to-video (Wan2.1 FLF2V): the video starts at start_image and ends at end_image."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **_size_inputs(1280, 720),
                "start_image": socket("IMAGE", "The first frame."),
                "end_image": socket("IMAGE", "The last frame."),
                "resize": combo(RESIZE, "official = bicubic resize; crop = keep aspect, center-crop."),
            },
            "optional": {
                "clip_embeds": socket(
                    WAN_CLIP_EMBEDS, "CLIP-H features of both images (Wan CLIP Vision Encode with end_image connected)."
                )
            },
        }

    def make(
        self,
        vae: WanVAE,
        width: int,
        height: int,
        length: int,
        start_image: torch.Tensor,
        end_image: torch.Tensor,
        resize: ResizeMode,
        clip_embeds: torch.Tensor | None = None,
    ) -> Conditioning:
        return wc.flf2v_conditioning(
            vae, start_image[:1], end_image[:1], length, width, height, clip_fea=clip_embeds, resize=resize
        )


class WanTI2VLatent(_ConditioningNode):
    DESCRIPTION = (
        "Wan2.2 TI2V-5B: text-to-video, or image-to-video when a start image is connected (the first "
        "latent frame is locked to the encoded image). Needs the Wan2.2 VAE; sizes multiple of 32."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {**_size_inputs(1280, 704, 121, multiple=32)},
            "optional": {"start_image": socket("IMAGE", "Optional first frame (image-to-video).")},
        }

    def make(
        self, vae: WanVAE, width: int, height: int, length: int, start_image: torch.Tensor | None = None
    ) -> Conditioning:
        image = None if start_image is None else start_image[:1]
        return wc.ti2v_conditioning(vae, image, length, width, height)


class WanVaceToVideo(_ConditioningNode):
    DESCRIPTION = (
        "VACE control: a control video (e.g. canny/depth/pose frames), an optional mask (1 = "
        "generate) and reference images, with a strength active over a range of the steps. Chain "
        "several by connecting a previous VACE conditioning."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **_size_inputs(),
                "strength": widget("FLOAT", "Scale of the VACE hints.", default=1.0, min=0.0, max=10.0, step=0.01),
                "start_percent": widget(
                    "FLOAT",
                    "Hints are active from this fraction of the steps.",
                    default=0.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                ),
                "end_percent": widget(
                    "FLOAT",
                    "Hints are active until this fraction of the steps.",
                    default=1.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                ),
            },
            "optional": {
                "control_video": socket("IMAGE", "Control frames (length frames; fit/resample them first)."),
                "control_masks": socket("MASK", "Where to generate (1) vs keep the control video (0)."),
                "reference_image": socket("IMAGE", "Reference image(s) for identity/style; prepended in time."),
                "previous": socket(WAN_CONDITIONING, "A VACE conditioning to combine with (several VACE inputs)."),
            },
        }

    def make(
        self,
        vae: WanVAE,
        width: int,
        height: int,
        length: int,
        strength: float,
        start_percent: float,
        end_percent: float,
        control_video: torch.Tensor | None = None,
        control_masks: torch.Tensor | None = None,
        reference_image: torch.Tensor | None = None,
        previous: Conditioning | None = None,
    ) -> Conditioning:
        cond = wc.vace_conditioning(
            vae,
            length,
            width,
            height,
            control_video=control_video,
            control_mask=control_masks,
            reference_images=reference_image,
            strength=strength,
            start=start_percent,
            end=end_percent,
        )
        return cond if previous is None else wc.combine_vace(previous, cond)


class WanFunControlToVideo(_ConditioningNode):
    DESCRIPTION = "Wan2.1/2.2 Fun-Control: a control video (canny/depth/pose) plus an optional start image."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {**_size_inputs(), "control_video": socket("IMAGE", "Control frames (length frames).")},
            "optional": {
                "start_image": socket("IMAGE", "Optional first frame."),
                "clip_embeds": _clip_input(),
                "model": socket(
                    WAN_MODEL,
                    "Optional: the Fun-Control model, to lay out its extra channels "
                    "(Wan2.2 Fun-Control adds a mask); without it the Wan2.1 layout is used.",
                ),
            },
        }

    def make(
        self,
        vae: WanVAE,
        width: int,
        height: int,
        length: int,
        control_video: torch.Tensor,
        start_image: torch.Tensor | None = None,
        clip_embeds: torch.Tensor | None = None,
        model: ModelSet | None = None,
    ) -> Conditioning:
        image = None if start_image is None else start_image[:1]
        extra = 2 * vae.config.z_dim if model is None else model.config.extra_channels
        return wc.fun_control_conditioning(
            vae,
            control_video,
            length,
            width,
            height,
            start_image=image,
            clip_fea=clip_embeds,
            model_extra_channels=extra,
        )


class WanFunInpaintToVideo(_ConditioningNode):
    DESCRIPTION = "Wan2.1 Fun-InP: start and/or end image inpainting-to-video."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {**_size_inputs()},
            "optional": {
                "start_image": socket("IMAGE", "Optional first frame."),
                "end_image": socket("IMAGE", "Optional last frame."),
                "clip_embeds": _clip_input(),
            },
        }

    def make(
        self,
        vae: WanVAE,
        width: int,
        height: int,
        length: int,
        start_image: torch.Tensor | None = None,
        end_image: torch.Tensor | None = None,
        clip_embeds: torch.Tensor | None = None,
    ) -> Conditioning:
        first = None if start_image is None else start_image[:1]
        last = None if end_image is None else end_image[:1]
        return wc.fun_inp_conditioning(
            vae, start_image=first, end_image=last, frames=length, width=width, height=height, clip_fea=clip_embeds
        )


NODE_CLASSES = {
    "WanCoreEmptyVideoLatent": (WanEmptyVideoLatent, "Wan Empty Video Latent"),
    "WanCoreImageToVideo": (WanImageToVideo, "Wan Image to Video"),
    "WanCoreFirstLastFrameToVideo": (WanFirstLastFrameToVideo, "Wan First-Last Frame to Video"),
    "WanCoreTI2VLatent": (WanTI2VLatent, "Wan TI2V-5B Latent"),
    "WanCoreVaceToVideo": (WanVaceToVideo, "Wan VACE to Video"),
    "WanCoreFunControlToVideo": (WanFunControlToVideo, "Wan Fun Control to Video"),
    "WanCoreFunInpaintToVideo": (WanFunInpaintToVideo, "Wan Fun InP to Video"),
}
