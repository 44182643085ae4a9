"""Fun-Camera nodes: a camera trajectory (preset or pose file), its conditioning, and a preview picture."""

from __future__ import annotations

import torch

from wan_core.conditioning import fun_camera_conditioning, preset_trajectory, read_pose_file
from wan_core.conditioning.camera import PRESETS
from wan_core.conditioning.camera_preview import render_trajectory

from . import comfy_bridge as bridge
from .common import NONE_CHOICE, combo, frames_widget, input_file_stamp, size_widget, socket, use_vae, widget
from .types import CATEGORY, WAN_CAMERA, WAN_CLIP_EMBEDS, WAN_CONDITIONING, WAN_MODEL, WAN_VAE

_CAT = f"{CATEGORY}/camera"
POSE_EXTENSIONS = (".txt",)


class WanCameraTrajectory:
    DESCRIPTION = (
        "A camera move for Wan-Fun camera models: a preset (pan, tilt, turn, zoom, orbit, roll, static) at a "
        "speed, or a CameraCtrl / RealEstate10K pose file (.txt) from the input folder."
    )
    CATEGORY = _CAT
    FUNCTION = "build"
    RETURN_TYPES = (WAN_CAMERA,)
    RETURN_NAMES = ("camera",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "preset": combo(list(PRESETS), "The camera move (used when no pose file is chosen).", "orbit_left"),
                "speed": widget(
                    "FLOAT",
                    "How far the preset moves over the video (1 = 1.5 units or 60 degrees).",
                    default=1.0,
                    min=0.0,
                    max=10.0,
                    step=0.05,
                ),
                "length": frames_widget(81),
                "pose_file": combo(
                    [NONE_CHOICE, *bridge.input_files(POSE_EXTENSIONS)],
                    "Optional CameraCtrl pose file in the input folder (one line per frame: frame fx fy cx cy "
                    "k1 k2 + a 3x4 world-to-camera matrix); overrides the preset.",
                ),
            }
        }

    def build(self, preset, speed, length, pose_file):
        with bridge.comfy_errors():
            if pose_file != NONE_CHOICE:
                return (read_pose_file(bridge.input_path(pose_file)).fit_length(length),)
            return (preset_trajectory(preset, length, speed),)

    @classmethod
    def IS_CHANGED(cls, preset, speed, length, pose_file):
        """Re-read an edited pose file (ComfyUI caches outputs by input values otherwise)."""
        return input_file_stamp(pose_file) if pose_file != NONE_CHOICE else ""


class WanFunCameraToVideo:
    DESCRIPTION = (
        "Wan-Fun camera conditioning (Wan2.1 Fun Camera V1.1, Wan2.2 Fun camera): Plücker-ray embeddings of the "
        "camera trajectory plus an optional start image."
    )
    CATEGORY = _CAT
    FUNCTION = "build"
    RETURN_TYPES = (WAN_CONDITIONING,)
    RETURN_NAMES = ("conditioning",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": socket(WAN_VAE, "The Wan VAE of the model."),
                "camera": socket(WAN_CAMERA, "The camera move (Wan Camera Trajectory)."),
                "width": size_widget("width", 832),
                "height": size_widget("height", 480),
                "length": frames_widget(81),
            },
            "optional": {
                "start_image": socket("IMAGE", "Optional first frame."),
                "clip_embeds": socket(WAN_CLIP_EMBEDS, "Wan2.1 Fun Camera: CLIP-H features of the start image."),
                "model": socket(
                    WAN_MODEL, "The camera model, to lay out its image channels (Wan2.2 adds a mask); default Wan2.1."
                ),
            },
        }

    def build(self, vae, camera, width, height, length, start_image=None, clip_embeds=None, model=None):
        extra = None if model is None else model.config.extra_channels
        image = None if start_image is None else start_image[:1]
        use_vae(vae, length, height, width)
        with bridge.comfy_errors(), torch.inference_mode():
            cond = fun_camera_conditioning(
                vae, camera, length, width, height, image, clip_embeds, model_extra_channels=extra
            )
        return (cond,)


class WanCameraPreview:
    DESCRIPTION = "Draws a camera trajectory from above and from the side (blue = first frame, red = last)."
    CATEGORY = _CAT
    FUNCTION = "render"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "camera": socket(WAN_CAMERA, "The camera move to draw."),
                "width": widget("INT", "Picture width in pixels.", default=512, min=128, max=2048, step=16),
                "height": widget("INT", "Picture height in pixels.", default=256, min=64, max=2048, step=16),
            }
        }

    def render(self, camera, width, height):
        return (render_trajectory(camera, width, height),)


NODE_CLASSES = {
    "WanCoreCameraTrajectory": (WanCameraTrajectory, "Wan Camera Trajectory"),
    "WanCoreFunCameraToVideo": (WanFunCameraToVideo, "Wan Fun Camera to Video"),
    "WanCoreCameraPreview": (WanCameraPreview, "Wan Camera Preview"),
}
