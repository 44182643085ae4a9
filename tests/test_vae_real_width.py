"""Done-criterion of the VAE issue: ComfyUI-layout VAEs at the RELEASED widths load with
``wan_core.load_vae(path)`` and match diffusers in fp32.

Widths: Wan2.1 base 96 (126.9 M parameters); Wan2.2 encoder 160 / decoder 256
(704.7 M). Weights are random and stored in bf16 (like ComfyUI's repackaged
files), so the file is half the size; both sides compute in fp32 from the same
bf16 values. Frames are tiny so the test runs in seconds. Marked ``slow`` but not
deselected anywhere: CI's ``pytest tests`` runs it.
"""

from __future__ import annotations

import dataclasses
import gc

import pytest
import torch
from conftest import rel_err
from diffusers import AutoencoderKLWan
from safetensors.torch import load_file, save_file
from test_vae_reference import to_official

import wan_core
from wan_core.tiny_models import TINY
from wan_core.vae.tiny import tiny_vae_state_dict

REAL = dataclasses.replace(TINY, vae21_base_dim=96, vae22_base_dim=160, vae22_decoder_dim=256)
PARAMS = {"2.1": 126.9e6, "2.2": 704.7e6}  # WAN_SPEC.md 4.2 / 4.3
CASES = {"2.1": (5, 16, 16), "2.2": (1, 32, 32)}  # frames, height, width (2.2: 1 frame keeps it cheap)


def diffusers_on_meta(version: str) -> AutoencoderKLWan:
    with torch.device("meta"):
        if version == "2.2":
            return AutoencoderKLWan(
                base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True, in_channels=12,
                out_channels=12, patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
            )  # fmt: skip
        return AutoencoderKLWan(base_dim=96, z_dim=16)


@pytest.mark.slow
@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_released_width_comfyui_file_matches_diffusers(version, tmp_path):
    path = tmp_path / f"wan{version}_vae.safetensors"
    sd = tiny_vae_state_dict(version, seed=5, sizes=REAL, dtype=torch.bfloat16)
    n_params = sum(v.numel() for v in sd.values())
    assert abs(n_params - PARAMS[version]) / PARAMS[version] < 1e-3, n_params
    save_file(sd, path)
    del sd
    frames, h, w = CASES[version]
    video = torch.rand(1, 3, frames, h, w, generator=torch.Generator().manual_seed(0)) * 2 - 1

    # Ours first, then free it: the 2.2 VAE is 2.8 GB in fp32 and this machine is shared.
    vae = wan_core.load_vae(str(path), device="cpu", dtype=torch.float32)
    assert (vae.config.base_dim, vae.config.decoder_dim) == ((96, 96) if version == "2.1" else (160, 256))
    z = vae.encode(video)
    frames_out = vae.decode(z)
    mean, std = vae.latent_mean.view(1, -1, 1, 1, 1), vae.latent_std.view(1, -1, 1, 1, 1)
    del vae
    gc.collect()

    ref = diffusers_on_meta(version)
    names = {to_official({k: None}, version).popitem()[0]: k for k in ref.state_dict()}
    stored = load_file(path)
    assert set(stored) == set(names)
    ref.load_state_dict({names[k]: v.float() for k, v in stored.items()}, assign=True)
    del stored
    ref.eval().requires_grad_(False)
    with torch.no_grad():
        mu = ref.encode(video).latent_dist.mean
        expected = ref.decode(z * std + mean).sample
    assert rel_err(z, (mu - mean) / std) <= 1e-3
    assert rel_err(frames_out, expected) <= 1e-3
