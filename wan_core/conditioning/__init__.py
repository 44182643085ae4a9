"""Conditioning builders (I2V, FLF2V, TI2V, VACE, Fun, Fun-Camera, continuation) and control preprocessing.

Builders take ComfyUI-style IMAGE tensors ``[N, H, W, 3]`` in 0..1 (MASK ``[N, H, W]``),
pixel frames/width/height, and a loaded VAE, and return a :class:`Conditioning`
with NORMALISED latents for the sampler. ``validate_conditioning`` checks the result
against the loaded DiT before sampling. Preprocessing lives in ``.control``.
"""

from . import control
from .camera import CameraTrajectory, camera_embedding, plucker_rays, preset_trajectory, read_pose_file
from .extend import continuation_conditioning, join_continuation, match_colors
from .fun import fun_control_conditioning
from .fun_camera import fun_camera_conditioning
from .i2v import anchored_conditioning, flf2v_conditioning, fun_inp_conditioning, i2v_conditioning, t2v_conditioning
from .image import best_output_size, official_i2v_size
from .ti2v import ti2v_conditioning
from .types import Conditioning, FrameLock, VaceHint
from .vace import combine_vace, mask_latent, vace_conditioning
from .validate import check_frames, check_vae, validate_conditioning

__all__ = [
    "CameraTrajectory",
    "Conditioning",
    "FrameLock",
    "VaceHint",
    "anchored_conditioning",
    "best_output_size",
    "camera_embedding",
    "check_frames",
    "check_vae",
    "combine_vace",
    "continuation_conditioning",
    "control",
    "flf2v_conditioning",
    "fun_camera_conditioning",
    "fun_control_conditioning",
    "fun_inp_conditioning",
    "i2v_conditioning",
    "join_continuation",
    "mask_latent",
    "match_colors",
    "official_i2v_size",
    "plucker_rays",
    "preset_trajectory",
    "read_pose_file",
    "t2v_conditioning",
    "ti2v_conditioning",
    "vace_conditioning",
    "validate_conditioning",
]
