"""VAE configuration: a frozen dataclass read from the checkpoint's keys and shapes.

Nothing is taken from file names. Widths come from tensor shapes, so narrow test
VAEs (base width 16) and the released ones (Wan2.1: 96; Wan2.2: 160 / 256) load
through the same code. Expects OFFICIAL key names (the loader renames other layouts first).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..checkpoints import shape_guard
from ..errors import CheckpointError, UnsupportedModelError

# Per-channel statistics of the raw VAE mean (WAN_SPEC.md 4.2 / 4.3): z = (mu - mean) / std.
WAN21_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip
WAN22_LATENT_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)  # fmt: skip
WAN22_LATENT_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)  # fmt: skip

LATENT_STATS = {
    ("2.1", 16): (WAN21_LATENT_MEAN, WAN21_LATENT_STD),
    ("2.2", 48): (WAN22_LATENT_MEAN, WAN22_LATENT_STD),
}

VIDEO_CHANNELS = 3


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of one Wan VAE.

    ``version`` "2.1" (z 16, stride 4x8x8) or "2.2" (z 48, patchify 2, stride 4x16x16).
    ``base_dim`` is the encoder width, ``decoder_dim`` the decoder's (equal in 2.1);
    stage ``i`` has width ``dim * dim_mult[i]``. ``temporal_downsample[i]`` says
    whether encoder stage ``i`` halves time; the decoder uses it reversed.
    """

    version: str
    z_dim: int
    base_dim: int
    decoder_dim: int
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    patch_size: int = 1

    def __post_init__(self) -> None:
        if self.version not in ("2.1", "2.2"):
            raise UnsupportedModelError(f"VAE version {self.version!r} is not supported; expected '2.1' or '2.2'.")
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise CheckpointError(
                f"VAE has {len(self.dim_mult)} stages but {len(self.temporal_downsample)} temporal flags; "
                f"expected {len(self.dim_mult) - 1}."
            )

    @property
    def spatial_stride(self) -> int:
        """Pixels per latent position along H and W (8 for 2.1, 16 for 2.2)."""
        return self.patch_size * 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_stride(self) -> int:
        """Pixel frames per latent frame after the first (4 for both)."""
        return 2 ** sum(self.temporal_downsample)

    @property
    def temporal_upsample(self) -> tuple[bool, ...]:
        return tuple(reversed(self.temporal_downsample))

    @property
    def in_channels(self) -> int:
        """Encoder input channels after patchify (3 or 12)."""
        return VIDEO_CHANNELS * self.patch_size**2

    def latent_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean [z], std [z]) float32 of the raw VAE mean."""
        mean, std = LATENT_STATS[(self.version, self.z_dim)]
        cpu = torch.device("cpu")  # explicit: the loader builds the model under a meta-device context
        return torch.tensor(mean, dtype=torch.float32, device=cpu), torch.tensor(std, dtype=torch.float32, device=cpu)


# ---------------------------------------------------------------------------------------
# Detection from official key names and shapes
# ---------------------------------------------------------------------------------------

ShapeOf = Mapping[str, tuple[int, ...]]


def is_wan22_layout(keys) -> bool:
    """Wan2.2 nests blocks inside stages: ``decoder.upsamples.0.upsamples.0...``."""
    return any(k.startswith("decoder.upsamples.0.upsamples.") for k in keys)


def _need(shapes: ShapeOf, key: str) -> tuple[int, ...]:
    if key not in shapes:
        raise CheckpointError(
            f"The VAE weights lack {key!r}, which every Wan VAE has. The file is incomplete or "
            "not a Wan VAE: re-download it."
        )
    return shapes[key]


def _indices(keys, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def _stages_wan21(shapes: ShapeOf) -> tuple[list[int], int, list[bool]]:
    """Stage out-widths, residual blocks per stage and temporal flags of a flat 2.1 encoder."""
    widths: list[int] = []
    temporal: list[bool] = []
    blocks_in_stage = 0
    counts: list[int] = []
    out = 0
    for i in _indices(shapes, r"encoder\.downsamples\.(\d+)\."):
        p = f"encoder.downsamples.{i}."
        if p + "residual.2.weight" in shapes:
            blocks_in_stage += 1
            out = shapes[p + "residual.2.weight"][0]
        elif p + "resample.1.weight" in shapes:
            temporal.append(p + "time_conv.weight" in shapes)
            widths.append(out)
            counts.append(blocks_in_stage)
            blocks_in_stage = 0
        else:
            raise UnsupportedModelError(
                f"encoder.downsamples.{i} is neither a residual block nor a resample layer; attention "
                "inside encoder stages is not part of any released Wan VAE."
            )
    widths.append(out)
    counts.append(blocks_in_stage)
    if len(set(counts)) != 1:
        raise UnsupportedModelError(f"Wan2.1 VAE stages have differing residual block counts {counts}.")
    return widths, counts[0], temporal


def _stages_wan22(shapes: ShapeOf) -> tuple[list[int], int, list[bool]]:
    """Stage out-widths, residual blocks per stage and temporal flags of a nested 2.2 encoder."""
    widths: list[int] = []
    temporal: list[bool] = []
    counts: list[int] = []
    stages = _indices(shapes, r"encoder\.downsamples\.(\d+)\.")
    for s in stages:
        p = f"encoder.downsamples.{s}.downsamples."
        n = len(_indices(shapes, re.escape(p) + r"(\d+)\.residual\."))
        counts.append(n)
        widths.append(_need(shapes, f"{p}0.residual.2.weight")[0])
        if s != stages[-1]:
            temporal.append(f"{p}{n}.time_conv.weight" in shapes)
    if len(set(counts)) != 1:
        raise UnsupportedModelError(f"Wan2.2 VAE stages have differing residual block counts {counts}.")
    return widths, counts[0], temporal


@shape_guard("a Wan VAE")
def detect_config(shapes: ShapeOf) -> VAEConfig:
    """Read a :class:`VAEConfig` from official key names and their shapes."""
    version = "2.2" if is_wan22_layout(shapes) else "2.1"
    conv_in = _need(shapes, "encoder.conv1.weight")
    base_dim, in_channels = conv_in[0], conv_in[1]
    z_dim = _need(shapes, "conv2.weight")[0]
    widths, num_res, temporal = (_stages_wan22 if version == "2.2" else _stages_wan21)(shapes)
    if any(w % base_dim for w in widths):
        raise UnsupportedModelError(f"VAE stage widths {widths} are not multiples of the base width {base_dim}.")
    dim_mult = tuple(w // base_dim for w in widths)
    decoder_dim = _need(shapes, "decoder.head.2.weight")[1] // dim_mult[0]
    patch = 2 if version == "2.2" else 1
    if in_channels != VIDEO_CHANNELS * patch**2:
        raise UnsupportedModelError(
            f"Wan{version} VAE encoder takes {in_channels} input channels; expected {VIDEO_CHANNELS * patch**2}."
        )
    if (version, z_dim) not in LATENT_STATS:
        raise UnsupportedModelError(
            f"Wan{version}-layout VAE has {z_dim} latent channels; only Wan2.1 (16) and Wan2.2 (48) VAEs "
            "have known latent statistics."
        )
    return VAEConfig(version, z_dim, base_dim, decoder_dim, dim_mult, num_res, tuple(temporal), patch)
