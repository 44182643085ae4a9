"""Reference side of the VAE parity tests: diffusers AutoencoderKLWan with random weights.

Also holds the TEST's own diffusers -> official key converter. It is written
independently of ``wan_core/vae/convert.py`` (an explicit prefix table built from
the diffusers config, instead of parsing keys), so a renaming bug in one is not
mirrored in the other. The tests in this file check that converter itself.
"""

from __future__ import annotations

import math

import torch
from diffusers import AutoencoderKLWan

# Official statistics as printed in WAN_SPEC.md 4.2 / 4.3 (spot values; diffusers carries the 2.1 lists).
SPEC_WAN22_MEAN_SPOTS = {0: -0.2289, 19: 0.5109, 47: -0.0667}
SPEC_WAN22_STD_SPOTS = {0: 0.4765, 39: 1.6887, 47: 0.7744}

RESNET = {"norm1.": "residual.0.", "conv1.": "residual.2.", "norm2.": "residual.3.", "conv2.": "residual.6.",
          "conv_shortcut.": "shortcut."}  # fmt: skip


def diffusers_vae(version: str, base_dim: int = 16, decoder_dim: int | None = None, seed: int = 1):
    """A diffusers AutoencoderKLWan (2.1 or 2.2 config) with EVERY parameter random (fixed seed)."""
    if version == "2.2":
        ref = AutoencoderKLWan(
            base_dim=base_dim, decoder_base_dim=decoder_dim or 2 * base_dim, z_dim=48, is_residual=True,
            in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
        )  # fmt: skip
    else:
        ref = AutoencoderKLWan(base_dim=base_dim, z_dim=16)
    randomize_(ref, seed)
    return ref.eval().requires_grad_(False)


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Gammas ~ 1 + 0.25 N, biases ~ 0.05 N, weights ~ N / sqrt(fan_in); the last decoder conv x0.3
    so that decoded frames mostly stay inside the [-1, 1] clamp (compare values, not clamp limits)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        x = torch.randn(p.shape, generator=gen)
        if name.endswith("gamma"):
            x = 1.0 + 0.25 * x
        elif p.dim() < 2:
            x = 0.05 * x
        else:
            x = x * ((0.3 if name.startswith("decoder.conv_out.") else 1.0) / math.sqrt(p[0].numel()))
        p.copy_(x)


def prefix_table(version: str, num_res_blocks: int = 2, stages: int = 4) -> list[tuple[str, str, bool]]:
    """(diffusers prefix, official prefix, is_resnet) for every module of the VAE."""
    t = [("quant_conv.", "conv1.", False), ("post_quant_conv.", "conv2.", False)]
    for side in ("encoder", "decoder"):
        t += [(f"{side}.conv_in.", f"{side}.conv1.", False), (f"{side}.norm_out.", f"{side}.head.0.", False),
              (f"{side}.conv_out.", f"{side}.head.2.", False),
              (f"{side}.mid_block.resnets.0.", f"{side}.middle.0.", True),
              (f"{side}.mid_block.attentions.0.", f"{side}.middle.1.", False),
              (f"{side}.mid_block.resnets.1.", f"{side}.middle.2.", True)]  # fmt: skip
    n = 0
    for i in range(stages):
        for j in range(num_res_blocks):
            if version == "2.2":
                t.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.downsamples.{i}.downsamples.{j}.", True))
            else:
                t.append((f"encoder.down_blocks.{n}.", f"encoder.downsamples.{n}.", True))
                n += 1
        if i < stages - 1:
            if version == "2.2":
                t.append((f"encoder.down_blocks.{i}.downsampler.",
                          f"encoder.downsamples.{i}.downsamples.{num_res_blocks}.", False))  # fmt: skip
            else:
                t.append((f"encoder.down_blocks.{n}.", f"encoder.downsamples.{n}.", False))
                n += 1
    n = 0
    for i in range(stages):
        for j in range(num_res_blocks + 1):
            official = f"decoder.upsamples.{i}.upsamples.{j}." if version == "2.2" else f"decoder.upsamples.{n}."
            t.append((f"decoder.up_blocks.{i}.resnets.{j}.", official, True))
            n += 1
        if i < stages - 1:
            if version == "2.2":
                t.append((f"decoder.up_blocks.{i}.upsampler.",
                          f"decoder.upsamples.{i}.upsamples.{num_res_blocks + 1}.", False))  # fmt: skip
            else:
                t.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.upsamples.{n}.", False))
            n += 1
    return t


def to_official(sd: dict[str, torch.Tensor], version: str) -> dict[str, torch.Tensor]:
    """Rename a diffusers AutoencoderKLWan state dict to official names; every key must be covered."""
    table = sorted(prefix_table(version), key=lambda row: -len(row[0]))
    out = {}
    for key, value in sd.items():
        for diff, official, is_resnet in table:
            if key.startswith(diff):
                rest = key[len(diff) :]
                if is_resnet:
                    rest = next((new + rest[len(old) :] for old, new in RESNET.items() if rest.startswith(old)), rest)
                out[official + rest] = value
                break
        else:
            raise KeyError(f"test converter does not cover {key}")
    return out


def test_converter_covers_every_key_one_to_one():
    for version in ("2.1", "2.2"):
        ref = diffusers_vae(version)
        sd = ref.state_dict()
        off = to_official(sd, version)
        assert len(off) == len(sd)
        assert "decoder.middle.0.residual.0.gamma" in off and "conv2.weight" in off


def test_converter_matches_spec_names():
    off = to_official(diffusers_vae("2.1").state_dict(), "2.1")
    # WAN_SPEC 4.2: upsamples.3 is the first upsample3d (time_conv 2C x C), 4 has a shortcut, 11 is upsample2d.
    assert off["decoder.upsamples.3.time_conv.weight"].shape[:2] == (128, 64)
    assert "decoder.upsamples.4.shortcut.weight" in off
    assert "decoder.upsamples.11.resample.1.weight" in off and "decoder.upsamples.11.time_conv.weight" not in off
    assert "encoder.downsamples.5.time_conv.weight" in off and "encoder.downsamples.2.time_conv.weight" not in off
    off22 = to_official(diffusers_vae("2.2").state_dict(), "2.2")
    assert "encoder.downsamples.1.downsamples.2.time_conv.weight" in off22
    assert "decoder.upsamples.0.upsamples.3.time_conv.weight" in off22
    assert "decoder.upsamples.2.upsamples.0.shortcut.weight" in off22
