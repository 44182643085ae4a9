"""DiT configuration, detected from tensor names and shapes (never from file names).

Detection follows WAN_SPEC section 3.4 (ComfyUI's rules): the width comes from
``head.modulation``, the head count is ``dim // 128``, the layer count from the
``blocks.N.`` keys, the input/output channels from the patch embedding and the head.
The task follows from which optional parts exist (``img_emb``, ``img_emb.emb_pos``,
``vace_patch_embedding``) and from the channel counts:

* in 16 / out 16, no img_emb: T2V. Wan2.2 T2V-A14B experts are key-identical to
  Wan2.1 T2V-14B, so both report ``wan2.1-t2v-14b``.
* in 36 + img_emb: Wan2.1 I2V (also Wan2.1-Fun-InP, the same architecture);
  in 36 without img_emb: a Wan2.2 I2V-A14B expert (no CLIP in Wan2.2).
* img_emb.emb_pos: FLF2V (its token count = emb_pos.shape[1], 514 released).
* in 48 (or 52) / out 16: Fun-Control. in 48 / out 48: Wan2.2 TI2V-5B (per-token t).
* vace_patch_embedding: VACE; layer positions from config.json ``vace_layers`` or
  spaced ``num_layers // count`` apart (spec 1.2).
* control_adapter: Wan-Fun camera. With img_emb: Wan2.1 Fun Control Camera (V1.1), y = the
  start-image latent (in = 2C); without: Wan2.2 Fun camera, y = 4-ch mask + latent (in = 2C + 4).
  The adapter's input is 24 Plücker channels pixel-unshuffled by the VAE stride (8, or 16
  for 48-channel latents).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

from ..checkpoints import guess_kind, shape_guard
from ..errors import InputError, UnsupportedModelError, preview_keys

HEAD_DIM = 128
TEXT_LEN = 512

REQUIRED_KEYS = (
    "patch_embedding.weight",
    "head.modulation",
    "head.head.weight",
    "text_embedding.0.weight",
    "time_embedding.0.weight",
    "blocks.0.ffn.0.weight",
)

# Released Wan DiTs whose extras we do not implement: key -> what it is.
UNSUPPORTED_MARKERS = {
    "casual_audio_encoder.encoder.final_linear.weight": "Wan2.2 S2V (audio)",
    "audio_proj.audio_proj_glob_1.layer.bias": "HuMo (audio)",
    "face_adapter.fuser_blocks.0.k_norm.weight": "Wan2.2 Animate (face adapter)",
}

SIZE_LABELS = {(1536, 30): "1.3b", (5120, 40): "14b", (3072, 30): "5b"}
CAMERA_CHANNELS = 24  # 6 Plücker channels x the 4 pixel frames of one latent frame


@dataclass(frozen=True)
class DiTConfig:
    """Architecture of one Wan DiT checkpoint (see WAN_SPEC 1.2 for the released values).

    Channel counts are latent channels (``in_dim`` includes the concatenated ``y``);
    ``clip_tokens`` is the number of CLIP tokens per sample the image embedding
    expects (514 for FLF2V; 257 for released I2V; None when it is not fixed by the
    weights); ``vace_layers`` are main-block indices receiving VACE hints.
    """

    variant: str
    family: str
    task: str
    size_label: str | None
    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_dim: int
    out_dim: int
    text_dim: int
    freq_dim: int
    patch_size: tuple[int, int, int] = (1, 2, 2)
    clip_dim: int | None = None
    clip_tokens: int | None = None
    vace_layers: tuple[int, ...] = ()
    vace_in_dim: int | None = None
    has_ref_conv: bool = False
    ref_conv_in_dim: int | None = None
    per_token_timesteps: bool = False
    camera_channels: int | None = None
    camera_downscale: int = 8
    camera_blocks: int = 0
    eps: float = 1e-6
    text_len: int = TEXT_LEN

    @property
    def latent_channels(self) -> int:
        return self.out_dim

    @property
    def extra_channels(self) -> int:
        """Channels of ``y`` concatenated after the noisy latent (i2v: 4 mask + 16 latent)."""
        return self.in_dim - self.out_dim

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def has_image_embedding(self) -> bool:
        return self.clip_dim is not None

    @property
    def has_vace(self) -> bool:
        return bool(self.vace_layers)

    @property
    def has_camera(self) -> bool:
        return self.camera_channels is not None

    @property
    def patch_volume(self) -> int:
        return math.prod(self.patch_size)


Shapes = Mapping[str, tuple[int, ...]]


def count_indexed(shapes: Shapes, prefix: str) -> int:
    """Number of ``prefix.N.`` groups; raises when the indices have gaps."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    indices = {int(m.group(1)) for k in shapes if (m := pattern.match(k))}
    if indices and indices != set(range(len(indices))):
        missing = sorted(set(range(max(indices) + 1)) - indices)
        raise UnsupportedModelError(
            f"The checkpoint's {prefix} are not numbered 0..N-1 (missing {missing[:5]}). "
            "The file is incomplete: re-download it."
        )
    return len(indices)


def check_is_wan_dit(shapes: Shapes) -> None:
    """Raise a helpful error when the tensors are not a (supported) Wan DiT."""
    missing = [k for k in REQUIRED_KEYS if k not in shapes]
    if missing:
        raise UnsupportedModelError(
            f"This is not a Wan DiT: missing {preview_keys(missing)}. The weights look like "
            f"{guess_kind(shapes)}. Load a Wan diffusion model (diffusion_models folder) here."
        )
    for key, what in UNSUPPORTED_MARKERS.items():
        if key in shapes:
            raise UnsupportedModelError(
                f"This Wan DiT is {what} (found {key!r}), which is not supported. Supported: "
                "T2V, I2V, FLF2V, VACE, Fun-Control/InP/Camera, Wan2.2 A14B experts and TI2V-5B."
            )


def detect_vace_layers(shapes: Shapes, num_layers: int, json_config: Mapping | None) -> tuple[int, ...]:
    count = count_indexed(shapes, "vace_blocks")
    if count == 0:
        raise UnsupportedModelError(
            "vace_patch_embedding is present but there are no vace_blocks.N tensors (a VACE DiT has both): "
            "the file is incomplete. Re-download it."
        )
    listed = (json_config or {}).get("vace_layers")
    if listed is not None:
        layers = tuple(int(i) for i in listed)
        if len(layers) != count or max(layers) >= num_layers:
            raise UnsupportedModelError(
                f"config.json vace_layers {list(layers)} does not fit {count} vace_blocks / {num_layers} blocks "
                f"(expected {count} block indices below {num_layers}). Fix or remove vace_layers in config.json."
            )
        return layers
    step = num_layers // count
    if step == 0:
        raise UnsupportedModelError(
            f"{count} vace_blocks for only {num_layers} blocks: not a known VACE layout (released VACE models have "
            "15 for 30 or 8 for 40 blocks, spaced evenly). Add vace_layers to a config.json beside the weights."
        )
    return tuple(range(0, step * count, step))


def classify(
    in_dim: int, out_dim: int, has_img: bool, has_pos: bool, has_vace: bool, has_camera: bool = False
) -> tuple[str, str]:
    """(family, task) from channel counts and optional parts; raises for unknown layouts."""
    if has_camera:
        if has_vace or in_dim - out_dim not in (out_dim, out_dim + 4):
            raise UnsupportedModelError(
                f"Camera DiT with in_dim {in_dim}/out_dim {out_dim}/VACE {has_vace}: unknown layout. Wan-Fun camera "
                f"models take {2 * out_dim} (Wan2.1, with img_emb) or {2 * out_dim + 4} (Wan2.2) input channels."
            )
        return ("wan2.1" if has_img else "wan2.2"), "fun-camera"
    if has_vace:
        if in_dim != out_dim or has_img:
            raise UnsupportedModelError(
                f"VACE DiT with in_dim {in_dim}/out_dim {out_dim}/img_emb {has_img}: unknown layout. Wan2.1 VACE "
                "has in_dim = out_dim = 16 and no img_emb; load a released VACE model."
            )
        return "wan2.1", "vace"
    if has_pos:
        return "wan2.1", "flf2v"
    if out_dim == 48 and in_dim == 48 and not has_img:
        return "wan2.2", "ti2v"
    if out_dim == 16 and in_dim in (48, 52):
        return ("wan2.1" if has_img else "wan2.2"), "fun-control"
    if out_dim == 16 and in_dim == 36:
        return ("wan2.1" if has_img else "wan2.2"), "i2v"
    if out_dim == 16 and in_dim == 16 and not has_img:
        return "wan2.1", "t2v"
    raise UnsupportedModelError(
        f"Unknown Wan DiT layout: in_dim {in_dim}, out_dim {out_dim}, img_emb {has_img}. Known: t2v 16/16, "
        "i2v 36/16, fun-control 48/16, ti2v 48/48, vace 16/16 + vace_blocks, fun-camera 32|36/16 + control_adapter."
    )


def variant_name(family: str, task: str, size_label: str | None) -> str:
    if size_label is None:
        return f"{family}-{task}"
    if family == "wan2.2" and size_label == "14b":
        return f"{family}-{task}-a14b"
    return f"{family}-{task}-{size_label}"


def describe_variant(config: DiTConfig, low_config: DiTConfig | None = None) -> str:
    """The honest name of one DiT, or of a Wan2.2 A14B expert pair (logs, metadata, node badges).

    Wan2.2 T2V-A14B experts have exactly the keys and shapes of Wan2.1 T2V-14B, so one of them alone
    reports ``wan2.1-t2v-14b`` (:func:`ambiguity_note` says so); with a low-noise expert the pair is
    named from its task and size (``wan2.2-t2v-a14b``).
    """
    if low_config is None:
        return config.variant
    return variant_name("wan2.2", config.task, config.size_label)


def check_pair(high: DiTConfig, low: DiTConfig) -> None:
    """The two experts of one A14B release have the same architecture: every detected field agrees."""
    if high == low:
        return
    differing = [
        f"{f.name} {getattr(high, f.name)!r} vs {getattr(low, f.name)!r}"
        for f in dataclasses.fields(high)
        if getattr(high, f.name) != getattr(low, f.name)
    ]
    raise InputError(
        f"The two experts do not match: the high-noise model is {high.variant} but the low-noise model is "
        f"{low.variant} ({'; '.join(differing) or 'different configurations'}). Pick the high- and low-noise "
        "files of the same Wan2.2 A14B model, or load a single DiT."
    )


def defaults_family(config: DiTConfig, is_pair: bool) -> str:
    """The family whose official defaults apply: an A14B expert pair is Wan2.2 (its T2V experts are
    detected as Wan2.1 T2V-14B, key for key)."""
    return "wan2.2" if is_pair else config.family


def ambiguity_note(config: DiTConfig) -> str | None:
    """What a single DiT might also be, when its tensors cannot tell (None when they can)."""
    if config.family == "wan2.1" and config.task == "t2v" and config.size_label in ("14b", None):
        return (
            f"{config.variant} has the same tensors as one expert of Wan2.2 T2V-A14B; if this file is such "
            "an expert, load its partner too (high-noise expert first, then the low-noise one), or it runs "
            "alone with Wan2.1 T2V defaults"
        )
    return None


@shape_guard("a Wan DiT")
def config_from_shapes(shapes: Shapes, json_config: Mapping | None = None) -> DiTConfig:
    """Detect a :class:`DiTConfig` from official tensor names -> shapes (prefix/scales already removed)."""
    check_is_wan_dit(shapes)
    dim = shapes["head.modulation"][-1]
    if dim % HEAD_DIM:
        raise UnsupportedModelError(
            f"DiT width {dim} (head.modulation) is not a multiple of the head dim {HEAD_DIM}: unknown layout. "
            "Released Wan DiTs are 1536 (1.3B), 3072 (5B) or 5120 (14B) wide; load one of them."
        )
    patch = tuple(shapes["patch_embedding.weight"][2:])
    if len(patch) != 3:
        raise UnsupportedModelError(
            f"patch_embedding.weight has shape {shapes['patch_embedding.weight']}; a Wan DiT's is 5-D "
            "[dim, in_dim, 1, 2, 2] (Conv3d). The file is not a Wan DiT or was converted wrongly: re-download it."
        )
    in_dim = shapes["patch_embedding.weight"][1]
    out_dim = shapes["head.head.weight"][0] // math.prod(patch)
    num_layers = count_indexed(shapes, "blocks")
    has_img = "img_emb.proj.0.weight" in shapes
    has_pos = "img_emb.emb_pos" in shapes
    has_vace = "vace_patch_embedding.weight" in shapes
    camera = detect_camera(shapes, out_dim, patch)
    family, task = classify(in_dim, out_dim, has_img, has_pos, has_vace, camera is not None)
    clip_dim = shapes["img_emb.proj.0.weight"][0] if has_img else None
    clip_tokens = shapes["img_emb.emb_pos"][1] if has_pos else (257 if clip_dim == 1280 else None)
    size = SIZE_LABELS.get((dim, num_layers))
    ref_in = shapes["ref_conv.weight"][1] if "ref_conv.weight" in shapes else None
    return DiTConfig(
        variant=variant_name(family, task, size),
        family=family,
        task=task,
        size_label=size,
        dim=dim,
        ffn_dim=shapes["blocks.0.ffn.0.weight"][0],
        num_heads=dim // HEAD_DIM,
        num_layers=num_layers,
        in_dim=in_dim,
        out_dim=out_dim,
        text_dim=shapes["text_embedding.0.weight"][1],
        freq_dim=shapes["time_embedding.0.weight"][1],
        patch_size=patch,  # type: ignore[arg-type]
        clip_dim=clip_dim,
        clip_tokens=clip_tokens,
        vace_layers=detect_vace_layers(shapes, num_layers, json_config) if has_vace else (),
        vace_in_dim=shapes["vace_patch_embedding.weight"][1] if has_vace else None,
        has_ref_conv=ref_in is not None,
        ref_conv_in_dim=ref_in,
        per_token_timesteps=task == "ti2v",
        **(camera or {}),
    )


def camera_downscale_for(latent_channels: int) -> int:
    """Pixel-unshuffle factor of the camera adapter = the VAE's spatial stride (16 for the z48 Wan2.2 VAE)."""
    return 16 if latent_channels == 48 else 8


class CameraFields(TypedDict, total=False):
    """DiTConfig's camera-adapter fields, to pass as ``**fields`` (empty: no adapter)."""

    camera_channels: int
    camera_downscale: int
    camera_blocks: int


def camera_fields(out_dim: int, channels: int = CAMERA_CHANNELS, blocks: int = 1) -> CameraFields:
    """The camera adapter of a DiT whose latent has ``out_dim`` channels (released ones: 24 channels, 1 block)."""
    return CameraFields(camera_channels=channels, camera_downscale=camera_downscale_for(out_dim), camera_blocks=blocks)


def detect_camera(shapes: Shapes, out_dim: int, patch: tuple[int, ...]) -> CameraFields | None:
    """Camera-adapter fields of DiTConfig from ``control_adapter.*`` shapes; None without an adapter."""
    conv = shapes.get("control_adapter.conv.weight")
    if conv is None:
        return None
    down = camera_downscale_for(out_dim)
    if len(conv) != 4 or conv[1] % (down * down) or tuple(conv[2:]) != tuple(patch[1:]):
        raise UnsupportedModelError(
            f"control_adapter.conv.weight has shape {tuple(conv)}; a Wan-Fun camera adapter's is "
            f"[dim, 24*{down}*{down}, {patch[1]}, {patch[2]}]. The file is not a released camera model or is damaged."
        )
    blocks = count_indexed(shapes, "control_adapter.residual_blocks")
    return camera_fields(out_dim, conv[1] // (down * down), blocks)


# Released architectures (WAN_SPEC 1.2): variant -> (dim, ffn, layers, in, out, clip_dim, clip_tokens, vace)
RELEASED: dict[str, tuple[int, int, int, int, int, int | None, int | None, tuple[int, ...]]] = {
    "wan2.1-t2v-1.3b": (1536, 8960, 30, 16, 16, None, None, ()),
    "wan2.1-t2v-14b": (5120, 13824, 40, 16, 16, None, None, ()),
    "wan2.1-i2v-14b": (5120, 13824, 40, 36, 16, 1280, 257, ()),
    "wan2.1-flf2v-14b": (5120, 13824, 40, 36, 16, 1280, 514, ()),
    "wan2.1-vace-1.3b": (1536, 8960, 30, 16, 16, None, None, tuple(range(0, 30, 2))),
    "wan2.1-vace-14b": (5120, 13824, 40, 16, 16, None, None, tuple(range(0, 40, 5))),
    "wan2.1-fun-control-1.3b": (1536, 8960, 30, 48, 16, 1280, 257, ()),
    "wan2.2-i2v-a14b": (5120, 13824, 40, 36, 16, None, None, ()),
    "wan2.2-ti2v-5b": (3072, 14336, 30, 48, 48, None, None, ()),
    "wan2.1-fun-camera-1.3b": (1536, 8960, 30, 32, 16, 1280, 257, ()),
    "wan2.1-fun-camera-14b": (5120, 13824, 40, 32, 16, 1280, 257, ()),
    "wan2.2-fun-camera-a14b": (5120, 13824, 40, 36, 16, None, None, ()),
}
_CAMERA_RELEASES = {"wan2.1-fun-camera-1.3b", "wan2.1-fun-camera-14b", "wan2.2-fun-camera-a14b"}


def released_config(variant: str) -> DiTConfig:
    """The DiTConfig of a released model (for benchmarks and shape checks; loading always detects)."""
    if variant not in RELEASED:
        raise UnsupportedModelError(f"Unknown released variant {variant!r}; known: {', '.join(RELEASED)}.")
    dim, ffn, layers, in_dim, out_dim, clip_dim, clip_tokens, vace = RELEASED[variant]
    camera = variant in _CAMERA_RELEASES
    family, task = classify(in_dim, out_dim, clip_dim is not None, clip_tokens == 514, bool(vace), camera)
    adapter: CameraFields = camera_fields(out_dim) if camera else {}
    return DiTConfig(
        variant=variant,
        family=family,
        task=task,
        size_label=SIZE_LABELS[(dim, layers)],
        dim=dim,
        ffn_dim=ffn,
        num_heads=dim // HEAD_DIM,
        num_layers=layers,
        in_dim=in_dim,
        out_dim=out_dim,
        text_dim=4096,
        freq_dim=256,
        clip_dim=clip_dim,
        clip_tokens=clip_tokens,
        vace_layers=vace,
        vace_in_dim=96 if vace else None,
        per_token_timesteps=task == "ti2v",
        **adapter,
    )
