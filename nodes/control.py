"""Control-video preprocessing for VACE / Fun-Control: canny, soft edges, depth / pose, fit, resample.

Frames are ComfyUI IMAGE batches [F, H, W, 3] 0..1 in and out; the work is done by
``wan_core.conditioning.control`` (OpenCV).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from wan_core.conditioning import control

from . import comfy_bridge as bridge
from .common import combo, frames_widget, size_widget, socket, widget
from .types import CATEGORY

_CAT = f"{CATEGORY}/control"


def _frames() -> tuple:
    return socket("IMAGE", "Frames of the control video, [F, H, W, 3] 0..1.")


class _ControlNode:
    CATEGORY = _CAT
    FUNCTION = "process"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    run: Callable[..., torch.Tensor]  # each node's processing, with its own inputs

    def process(self, **kwargs: object) -> tuple[torch.Tensor]:
        with bridge.comfy_errors():
            return (self.run(**kwargs),)


class WanCannyEdges(_ControlNode):
    DESCRIPTION = "Canny edge maps of every frame (white edges on black), for VACE / Fun-Control."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": _frames(),
                "low_threshold": widget(
                    "INT", "Canny lower hysteresis threshold (0..255).", default=100, min=0, max=255
                ),
                "high_threshold": widget(
                    "INT", "Canny upper hysteresis threshold (0..255).", default=200, min=0, max=255
                ),
            }
        }

    def run(self, frames: torch.Tensor, low_threshold: int, high_threshold: int) -> torch.Tensor:
        return control.canny(frames, low_threshold, high_threshold)


class WanSoftEdges(_ControlNode):
    DESCRIPTION = "Soft edge maps (gradient magnitude) of every frame."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": _frames(), "method": combo(["sobel", "laplacian"], "Gradient operator.")}}

    def run(self, frames: torch.Tensor, method: str) -> torch.Tensor:
        return control.soft_edge(frames, method=method)


class WanDepthPassthrough(_ControlNode):
    DESCRIPTION = "Depth maps made elsewhere: converted to grayscale and normalised to the full 0..1 range."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": socket("IMAGE", "Depth map frames (any depth estimator's output).")}}

    def run(self, frames: torch.Tensor) -> torch.Tensor:
        return control.normalize_depth(frames)


class WanPosePassthrough(_ControlNode):
    DESCRIPTION = "Pose frames made elsewhere (e.g. DWPose): passed through unchanged (RGB)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": socket("IMAGE", "Rendered pose frames.")}}

    def run(self, frames: torch.Tensor) -> torch.Tensor:
        return control.pose_frames(frames)


class WanFitFrames(_ControlNode):
    DESCRIPTION = "Fits frames to the generation size: crop (fill), letterbox (pad) or stretch."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": _frames(),
                "width": size_widget("width", 832),
                "height": size_widget("height", 480),
                "mode": combo(["crop", "letterbox", "stretch"], "How to match the aspect ratio."),
            }
        }

    def run(self, frames: torch.Tensor, width: int, height: int, mode: control.FitMode) -> torch.Tensor:
        return control.fit_frames(frames, width, height, mode=mode)


class WanResampleFrames(_ControlNode):
    DESCRIPTION = (
        "Resamples a control video in time: to a target fps and/or a frame count, rounded to 4n+1 "
        "so it matches the generation's length."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": _frames(),
                "source_fps": widget("FLOAT", "Frame rate of the input video.", default=16.0, min=1.0, max=240.0),
                "target_fps": widget(
                    "FLOAT", "Frame rate wanted; 0 keeps the source rate.", default=16.0, min=0.0, max=240.0
                ),
                "length": frames_widget(81),
                "use_length": widget(
                    "BOOLEAN", "On: resample to exactly `length` frames; off: by fps only.", default=True
                ),
            }
        }

    def run(
        self, frames: torch.Tensor, source_fps: float, target_fps: float, length: int, use_length: bool
    ) -> torch.Tensor:
        return control.resample_video(
            frames, source_fps, dst_fps=target_fps or None, frames=length if use_length else None
        )


NODE_CLASSES = {
    "WanCoreCannyEdges": (WanCannyEdges, "Wan Canny Edges"),
    "WanCoreSoftEdges": (WanSoftEdges, "Wan Soft Edges"),
    "WanCoreDepthPassthrough": (WanDepthPassthrough, "Wan Depth Map (passthrough)"),
    "WanCorePosePassthrough": (WanPosePassthrough, "Wan Pose Frames (passthrough)"),
    "WanCoreFitFrames": (WanFitFrames, "Wan Fit Frames"),
    "WanCoreResampleFrames": (WanResampleFrames, "Wan Resample Frames"),
}
