"""VAE decode / encode, save video (H.264 mp4 or animated WebP with metadata), load video."""

from __future__ import annotations

import torch

from wan_core import video_io
from wan_core.budget import vae_latent_run_bytes
from wan_core.vae.model import WanVAE
from wan_core.vae.tiling import TileOptions

from . import comfy_bridge as bridge
from .common import combo, input_file_stamp, socket, use_vae, widget
from .convert import image_from_video, latent_from_comfy, latent_to_comfy, video_from_image
from .types import CATEGORY, WAN_VAE

_CAT = f"{CATEGORY}/video"


def _tiling(tiled: bool, tile_size: int, tile_overlap: int) -> TileOptions | None:
    return TileOptions(tile_size=tile_size, overlap=tile_overlap) if tiled else None


def _tiling_inputs() -> dict:
    return {
        "tiled": widget(
            "BOOLEAN", "Process in overlapping spatial tiles (less memory, tiny seams possible).", default=False
        ),
        "tile_size": widget("INT", "Tile size in pixels.", default=256, min=64, max=4096, step=16),
        "tile_overlap": widget("INT", "Tile overlap in pixels (blended).", default=64, min=0, max=1024, step=8),
    }


class WanVAEDecode:
    DESCRIPTION = (
        "Decodes a Wan LATENT (ours or a native KSampler's: raw VAE mean) into IMAGE frames "
        "[F, H, W, 3]. Batches of videos are concatenated frame-wise."
    )
    CATEGORY = _CAT
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": socket(WAN_VAE, "The Wan VAE the latent was made with."),
                "latent": socket("LATENT", "Video latent [B, C, T, h, w]."),
                **_tiling_inputs(),
            }
        }

    def decode(self, vae: WanVAE, latent: dict, tiled: bool, tile_size: int, tile_overlap: int) -> tuple[torch.Tensor]:
        z = latent_from_comfy(latent)
        tile = tile_size if tiled else None
        bridge.use_models([vae], lambda: vae_latent_run_bytes(vae.config, z.shape, vae.dtype, tile))
        hooks, close = bridge.make_hooks(z.shape[2], want_preview=False)
        try:
            with bridge.comfy_errors(), torch.inference_mode():
                video = vae.decode(z, tiling=_tiling(tiled, tile_size, tile_overlap), hooks=hooks)
        finally:
            close()
        return (image_from_video(video),)


class WanVAEEncode:
    DESCRIPTION = "Encodes IMAGE frames (4n+1 of them) into a Wan LATENT (raw VAE mean, ComfyUI convention)."
    CATEGORY = _CAT
    FUNCTION = "encode"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": socket(WAN_VAE, "The Wan VAE."),
                "frames": socket("IMAGE", "Frames [F, H, W, 3], F = 4n+1."),
                **_tiling_inputs(),
            }
        }

    def encode(self, vae: WanVAE, frames: torch.Tensor, tiled: bool, tile_size: int, tile_overlap: int) -> tuple[dict]:
        count, height, width = frames.shape[:3]
        tile = tile_size if tiled else None
        use_vae(vae, count, height, width, tile)
        hooks, close = bridge.make_hooks(frames.shape[0], want_preview=False)
        try:
            with bridge.comfy_errors(), torch.inference_mode():
                z = vae.encode(video_from_image(frames), tiling=_tiling(tiled, tile_size, tile_overlap), hooks=hooks)
        finally:
            close()
        return (latent_to_comfy(z),)


class WanSaveVideo:
    DESCRIPTION = (
        "Saves frames as an H.264 mp4 (or animated WebP) in ComfyUI's output folder, with the prompt "
        "and workflow in the file's metadata, and previews it on the node."
    )
    CATEGORY = _CAT
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    RETURN_NAMES = ()

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": socket("IMAGE", "Video frames [F, H, W, 3]."),
                "fps": widget(
                    "FLOAT", "Frames per second (Wan2.1: 16; TI2V-5B: 24).", default=16.0, min=1.0, max=120.0, step=1.0
                ),
                "filename_prefix": widget("STRING", "File name prefix; may contain a subfolder.", default="wan/video"),
                "format": combo(["mp4", "webp"], "mp4 = H.264 yuv420p; webp = animated WebP."),
                "crf": widget("INT", "H.264 quality (lower = better; 0 = lossless luma).", default=17, min=0, max=51),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save(
        self,
        frames: torch.Tensor,
        fps: float,
        filename_prefix: str,
        format: str,
        crf: int,
        prompt: dict | None = None,
        extra_pnginfo: dict | None = None,
    ) -> dict:
        height, width = int(frames.shape[1]), int(frames.shape[2])
        folder, stem, counter, subfolder = bridge.save_path(filename_prefix, width, height)
        name = f"{stem}_{counter:05}_.{format}"
        metadata = {}
        if bridge.metadata_enabled():
            metadata = {"prompt": prompt} if prompt is not None else {}
            metadata.update(extra_pnginfo or {})
        with bridge.comfy_errors():
            video_io.write_video(
                frames, folder / name, fps=fps, metadata=metadata or None, crf=crf, keyed_metadata=True
            )  # the editor loads the workflow from a dropped file
        result = {
            "filename": name,
            "subfolder": subfolder,
            "type": "output",
            "format": f"video/{format}",
            "frame_rate": fps,
        }
        return {"ui": {"images": [result], "animated": (True,)}, "result": ()}


class WanLoadVideo:
    DESCRIPTION = "Loads a video (or a still image) from ComfyUI's input folder as IMAGE frames."
    CATEGORY = _CAT
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "FLOAT", "INT")
    RETURN_NAMES = ("frames", "fps", "frame_count")

    @classmethod
    def INPUT_TYPES(cls):
        files = bridge.input_files(bridge.VIDEO_EXTENSIONS)
        return {
            "required": {
                # video_upload: the editor adds an upload button (mp4/webm) and a video preview, as on ComfyUI's LoadVideo
                "video": (
                    files,
                    {
                        "video_upload": True,
                        "tooltip": "Video file in ComfyUI's input folder (or upload one with the button).",
                    },
                ),
                "max_frames": widget("INT", "Read at most this many frames; 0 = all.", default=0, min=0, max=10000),
            }
        }

    def load(self, video: str, max_frames: int) -> tuple[torch.Tensor, float, int]:
        with bridge.comfy_errors():
            frames, fps = video_io.read_video(bridge.input_path(video), max_frames=max_frames or None)
        return (frames, float(fps), int(frames.shape[0]))

    @classmethod
    def IS_CHANGED(cls, video: str, max_frames: int) -> float | str:
        return input_file_stamp(video)

    @classmethod
    def VALIDATE_INPUTS(cls, video: str, max_frames: int) -> bool | str:
        if not (bridge.input_dir() / video).is_file():
            return f"Video file {video!r} is not in the input folder."
        return True


NODE_CLASSES = {
    "WanCoreVAEDecode": (WanVAEDecode, "Wan VAE Decode"),
    "WanCoreVAEEncode": (WanVAEEncode, "Wan VAE Encode"),
    "WanCoreSaveVideo": (WanSaveVideo, "Wan Save Video"),
    "WanCoreLoadVideo": (WanLoadVideo, "Wan Load Video"),
}
