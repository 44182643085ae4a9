"""Input checks with messages that say what to change: frame counts, sizes, model/conditioning fit.

``validate_conditioning`` compares a built :class:`Conditioning` with the loaded
DiT's config (and optionally the VAE's) before any sampling starts, so that a
wrong graph fails in one clear line instead of a shape error deep inside the model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import ConditioningError
from ..validation import check_frames as check_4n1_frames
from .types import Conditioning

if TYPE_CHECKING:
    from ..dit.config import DiTConfig
    from ..vae.config import VAEConfig

log = logging.getLogger(__name__)

VAE_FILES = {16: "wan_2.1_vae.safetensors", 48: "wan2.2_vae.safetensors"}
VAE_NAMES = {16: "Wan2.1 VAE", 48: "Wan2.2 VAE"}
VACE_CHANNELS = 96


def check_frames(frames: int, auto_round: bool = False) -> int:
    """A pixel frame count of the form 4n+1 (1, 5, 9, ..., 81, ..., 121), checked by the one rule in
    :func:`wan_core.validation.check_frames`.

    With ``auto_round`` a wrong (positive) count is rounded to the nearest 4n+1 (ties go up) and a
    warning is logged instead of raising :class:`InputError`.
    """
    count = int(frames)
    if auto_round and count >= 1 and (count - 1) % 4:
        below = count - (count - 1) % 4
        rounded = below + 4 if count - below >= 2 else below
        log.warning("frame count %d is not 4n+1; using %d", count, rounded)
        return rounded
    return check_4n1_frames(count)


def _field(config: object, name: str, default: Any = None) -> Any:
    return getattr(config, name, default) if config is not None else default


def _model_name(dit_config) -> str:
    variant = _field(dit_config, "variant")
    if variant:
        return str(variant)
    return f"{_field(dit_config, 'family', 'wan')}-{_field(dit_config, 'task', '?')}"


def _vae_fix(expected: int) -> str:
    name = VAE_FILES.get(expected)
    return f"load {name}" if name else f"load a VAE with {expected} latent channels"


def _check_patch_grid(cond: Conditioning, dit_config) -> None:
    """Latent height/width must be whole patches (the DiT patchifies 2x2)."""
    patch = tuple(_field(dit_config, "patch_size", (1, 2, 2)) or (1, 2, 2))
    _, frames, h, w = cond.latent_shape
    if frames % patch[0] or h % patch[1] or w % patch[2]:
        raise ConditioningError(
            f"latent (T, h, w) = {(frames, h, w)} is not a whole number of {patch} patches: use a width and height "
            f"that are multiples of 16 (32 for TI2V-5B)"
        )


def check_vae(dit_config: DiTConfig, vae_config: VAEConfig) -> None:
    """The VAE's latent channels must equal the DiT's (16: Wan2.1 VAE, 48: Wan2.2 VAE)."""
    z_dim = int(_field(vae_config, "z_dim"))
    expected = int(_field(dit_config, "latent_channels", _field(dit_config, "out_dim")))
    if z_dim != expected:
        version = _field(vae_config, "version")
        found = f"Wan{version}" if version else VAE_NAMES.get(z_dim, "unknown VAE")
        raise ConditioningError(
            f"VAE has {z_dim} latent channels ({found}) but the model {_model_name(dit_config)} expects "
            f"{expected} ({VAE_NAMES.get(expected, 'another VAE')}): {_vae_fix(expected)}"
        )


def _check_latent(cond: Conditioning, dit_config) -> None:
    expected = int(_field(dit_config, "latent_channels", _field(dit_config, "out_dim")))
    channels = cond.latent_shape[0]
    if channels != expected:
        raise ConditioningError(
            f"the conditioning was built for {channels}-channel latents ({VAE_NAMES.get(channels, '?')}) but the "
            f"model {_model_name(dit_config)} expects {expected}: rebuild it with the {VAE_NAMES.get(expected, '?')} "
            f"({_vae_fix(expected)})"
        )


BUILDER_HINTS = {
    "i2v": "build it with i2v_conditioning (WanImageToVideo) and a start image",
    "flf2v": "build it with flf2v_conditioning (first and last frame)",
    "fun-control": "build it with fun_control_conditioning and a control video",
    "fun-inp": "build it with fun_inp_conditioning",
    "vace": "use vace_conditioning; VACE models take no image channels",
    "fun-camera": "build it with fun_camera_conditioning (Wan Fun Camera to Video) and connect the model",
}


def _hint(task) -> str:
    return BUILDER_HINTS.get(str(task), "use the conditioning builder that matches the model")


def _check_y(cond: Conditioning, dit_config) -> None:
    extra = int(_field(dit_config, "extra_channels", 0) or 0)
    task, name = _field(dit_config, "task"), _model_name(dit_config)
    if cond.y is None:
        if extra:
            raise ConditioningError(
                f"the model {name} ({task}) takes {extra} image-conditioning channels but none were given: "
                f"{_hint(task)}"
            )
        return
    got = int(cond.y.shape[1])
    if not extra:
        raise ConditioningError(
            f"image conditioning ({got} channels: a start/end image or a control video) was given but the model "
            f"{name} is a {task} model that takes none: load an I2V / FLF2V / Fun model, or drop the image "
            f"for text-to-video"
        )
    if got != extra:
        raise ConditioningError(
            f"the image conditioning has {got} channels but the model {name} ({task}) expects {extra}: {_hint(task)}"
        )
    if tuple(cond.y.shape[2:]) != tuple(cond.latent_shape[1:]):
        raise ConditioningError(
            f"the image conditioning covers latent (T, h, w) = {tuple(cond.y.shape[2:])} but the video is "
            f"{tuple(cond.latent_shape[1:])}: build it with the same frames, width and height as the latent"
        )


def _check_clip(cond: Conditioning, dit_config) -> None:
    clip_dim = _field(dit_config, "clip_dim")
    family, task, name = _field(dit_config, "family"), _field(dit_config, "task"), _model_name(dit_config)
    if cond.clip_fea is None:
        if clip_dim is not None and task in ("i2v", "flf2v"):
            what = "the first and the last image" if task == "flf2v" else "the start image"
            raise ConditioningError(
                f"the model {name} (Wan2.1 {task}) needs CLIP vision features but none were given: encode {what} "
                f"with clip_vision_h.safetensors (CLIP Vision Encode) and connect clip_vision_output"
            )
        return
    if clip_dim is None:
        reason = "Wan2.2 models use no CLIP vision" if family == "wan2.2" else "it has no img_emb (CLIP projection)"
        raise ConditioningError(
            f"CLIP vision features were given but the model {name} cannot use them ({reason}): "
            f"disconnect clip_vision_output"
        )
    width, tokens = int(cond.clip_fea.shape[-1]), int(cond.clip_fea.shape[-2])
    if width != int(clip_dim):
        raise ConditioningError(
            f"CLIP vision features are {width} wide but the model {name} expects {clip_dim}: encode the image "
            f"with clip_vision_h.safetensors (CLIP-H/14, penultimate layer)"
        )
    expected = _field(dit_config, "clip_tokens")
    if expected and tokens != int(expected):
        fix = "encode both the first and the last image" if tokens * 2 == int(expected) else "re-encode the image(s)"
        raise ConditioningError(
            f"CLIP vision features have {tokens} tokens but the model {name} expects {expected}: {fix}"
        )


def _check_vace(cond: Conditioning, dit_config) -> None:
    if not cond.vace:
        return
    if not _field(dit_config, "vace_layers"):
        raise ConditioningError(
            f"VACE inputs were given but the model {_model_name(dit_config)} has no VACE blocks: load a VACE model "
            f"(e.g. wan2.1_vace_1.3B_fp16.safetensors) or remove the VACE conditioning"
        )
    for i, hint in enumerate(cond.vace):
        shape = tuple(hint.context.shape)
        if len(shape) != 5 or shape[1] != VACE_CHANNELS:
            raise ConditioningError(
                f"VACE input {i} has shape {shape}; expected [1, {VACE_CHANNELS}, T, h, w] (16 inactive + 16 "
                f"reactive latent + 64 mask channels): build it with vace_conditioning and the Wan2.1 VAE"
            )
        if shape[2:] != tuple(cond.latent_shape[1:]):
            raise ConditioningError(
                f"VACE input {i} covers latent (T, h, w) = {shape[2:]} but the video is "
                f"{tuple(cond.latent_shape[1:])}: build every VACE input with the same frames, width and height"
            )
        if not 0.0 <= hint.start <= hint.end:
            raise ConditioningError(f"VACE input {i}: start {hint.start} / end {hint.end}; need 0 <= start <= end")


def _check_frame_lock(cond: Conditioning, dit_config) -> None:
    lock = cond.frame_lock
    if lock is None:
        return
    if not _field(dit_config, "per_token_timesteps", False):
        raise ConditioningError(
            f"a TI2V first-frame image was given but the model {_model_name(dit_config)} does not take per-token "
            f"timesteps: use wan2.2_ti2v_5B for text+image-to-video, or i2v_conditioning with an I2V model"
        )
    if tuple(lock.latent.shape[1:]) != tuple(cond.latent_shape):
        raise ConditioningError(
            f"the TI2V frame lock has latent shape {tuple(lock.latent.shape[1:])} but the video is "
            f"{tuple(cond.latent_shape)}: build it with the same frames, width and height"
        )


def _check_camera(cond: Conditioning, dit_config) -> None:
    channels = _field(dit_config, "camera_channels")
    name = _model_name(dit_config)
    if cond.camera is None:
        if channels:
            log.info("%s runs without camera conditioning (no trajectory given): the camera moves freely.", name)
        return
    if not channels:
        raise ConditioningError(
            f"camera conditioning was given but the model {name} has no camera adapter: load a Fun-Camera model "
            f"(e.g. wan2.1_fun_camera_v1.1_1.3B_bf16.safetensors) or remove the camera input"
        )
    shape = tuple(cond.camera.shape)
    down = int(_field(dit_config, "camera_downscale", 8))
    c, t, h, w = cond.latent_shape
    expected = (1, int(channels), t, h * down, w * down)
    if shape != expected:
        raise ConditioningError(
            f"the camera conditioning has shape {shape} but the model {name} needs {list(expected)} for this video "
            f"(Plücker rays at pixel size): build it with the video's frames, width and height"
        )


def validate_conditioning(cond: Conditioning, dit_config: DiTConfig, vae_config: VAEConfig | None = None) -> None:
    """Raise :class:`ConditioningError` (naming the fix) when ``cond`` does not fit the loaded model.

    Checks, in order: VAE vs model latent channels, conditioning latent channels,
    whole 2x2 patches, image-conditioning channels ``y``, CLIP features, VACE inputs, TI2V frame lock,
    the camera rays and the VACE reference trim.
    """
    if vae_config is not None:
        check_vae(dit_config, vae_config)
    _check_latent(cond, dit_config)
    _check_patch_grid(cond, dit_config)
    _check_y(cond, dit_config)
    _check_clip(cond, dit_config)
    _check_vace(cond, dit_config)
    _check_frame_lock(cond, dit_config)
    _check_camera(cond, dit_config)
    if not 0 <= cond.trim_latent_frames < cond.latent_shape[1]:
        raise ConditioningError(
            f"trim_latent_frames {cond.trim_latent_frames} must be below the latent frame count "
            f"{cond.latent_shape[1]}: use fewer reference images or more frames"
        )
