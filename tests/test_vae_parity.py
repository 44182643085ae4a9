"""Parity of wan_core's VAEs with diffusers AutoencoderKLWan (an independent implementation).

The same random weights go to both: diffusers holds them under its own names; we
write them as an official .pth, a ComfyUI safetensors (official names under a
wrapper prefix) and a diffusers safetensors, and load each through OUR loader.
diffusers returns the RAW mean and takes a RAW latent, so its side is
(de)normalised with the official statistics; both sides clamp decoded frames to
[-1, 1] (the random decoder's last conv is scaled so few values reach the clamp).
"""

from __future__ import annotations

import pytest
import torch
from conftest import rel_err
from safetensors.torch import save_file
from test_vae_reference import SPEC_WAN22_MEAN_SPOTS, SPEC_WAN22_STD_SPOTS, diffusers_vae, to_official

import wan_core

TOL = 1e-4  # fp32 relative error (WAN_SPEC / project rule)
SIZES = {"2.1": (16, 24), "2.2": (32, 48)}  # non-square, multiples of the stride
FRAMES = (1, 5, 9, 13)
COMFY_PREFIX = {"2.1": "first_stage_model.", "2.2": "vae."}


@pytest.fixture(scope="module", params=["2.1", "2.2"])
def setup(request, tmp_path_factory):
    """(version, diffusers reference, {layout: our VAE loaded from that layout})."""
    version = request.param
    ref = diffusers_vae(version)
    diff_sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    official = to_official(diff_sd, version)
    folder = tmp_path_factory.mktemp(f"vae{version}")
    torch.save(official, folder / "Wan_VAE.pth")
    save_file({COMFY_PREFIX[version] + k: v for k, v in official.items()}, folder / "comfy_vae.safetensors")
    save_file(diff_sd, folder / "diffusion_pytorch_model.safetensors")
    ours = {
        "official": wan_core.load_vae(folder / "Wan_VAE.pth", device="cpu", dtype=torch.float32),
        "comfyui": wan_core.load_vae(folder / "comfy_vae.safetensors", device="cpu", dtype=torch.float32),
        "diffusers": wan_core.load_vae(folder / "diffusion_pytorch_model.safetensors", device="cpu", dtype="fp32"),
        "dict": wan_core.load_vae(official, device="cpu", dtype=torch.float32),
    }
    return version, ref, ours


def ref_stats(vae):
    return vae.latent_mean.view(1, -1, 1, 1, 1), vae.latent_std.view(1, -1, 1, 1, 1)


def test_config_detected(setup):
    version, ref, ours = setup
    cfg = ours["official"].config
    assert cfg.version == version
    assert (cfg.z_dim, cfg.spatial_stride, cfg.temporal_stride) == ((16, 8, 4) if version == "2.1" else (48, 16, 4))
    assert cfg.base_dim == 16 and cfg.decoder_dim == (16 if version == "2.1" else 32)
    assert cfg.dim_mult == (1, 2, 4, 4) and cfg.num_res_blocks == 2
    for vae in ours.values():
        assert vae.config == cfg and not vae.training


def test_every_layout_loads_identical_weights(setup):
    _, _, ours = setup
    base = ours["official"].state_dict()
    for layout, vae in ours.items():
        sd = vae.state_dict()
        assert sd.keys() == base.keys(), layout
        for k in base:
            assert torch.equal(sd[k], base[k]), (layout, k)


def test_latent_statistics(setup):
    version, ref, ours = setup
    mean, std = ours["official"].latent_mean, ours["official"].latent_std
    if version == "2.1":  # diffusers' default config carries the official 2.1 statistics
        assert torch.allclose(mean, torch.tensor(ref.config.latents_mean))
        assert torch.allclose(std, torch.tensor(ref.config.latents_std))
    else:
        assert mean.numel() == std.numel() == 48
        for i, v in SPEC_WAN22_MEAN_SPOTS.items():
            assert abs(float(mean[i]) - v) < 1e-6
        for i, v in SPEC_WAN22_STD_SPOTS.items():
            assert abs(float(std[i]) - v) < 1e-6


@pytest.fixture(scope="module")
def expected(setup):
    """diffusers outputs for a 13-frame clip and a 4-frame latent, in OUR conventions.

    Both VAEs are causal (output frame t depends on inputs <= t only), so the first
    (F-1)/4+1 latent frames of the 13-frame encode ARE diffusers' encode of the first
    F frames, and likewise for decode; the reference runs once, ours at every F.
    """
    version, ref, ours = setup
    h, w = SIZES[version]
    vae = ours["official"]
    s, z_dim = vae.config.spatial_stride, vae.config.z_dim
    video = torch.rand(1, 3, 13, h, w, generator=torch.Generator().manual_seed(3)) * 2 - 1
    z = torch.randn(1, z_dim, 4, h // s, w // s, generator=torch.Generator().manual_seed(4))
    mean, std = ref_stats(vae)
    with torch.no_grad():
        latent = (ref.encode(video).latent_dist.mean - mean) / std
        frames = ref.decode(z * std + mean).sample
    clamped = float((frames.abs() >= 1).float().mean())
    assert clamped < 0.2, f"{clamped:.0%} of reference values sit on the clamp; the comparison would be weak"
    return video, latent, z, frames


@pytest.mark.parametrize("frames", FRAMES)
def test_encode_matches_diffusers(setup, expected, frames):
    _, _, ours = setup
    video, latent, _, _ = expected
    got = ours["official"].encode(video[:, :, :frames])
    want = latent[:, :, : (frames - 1) // 4 + 1]
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert rel_err(got, want) <= TOL


@pytest.mark.parametrize("frames", FRAMES)
def test_decode_matches_diffusers(setup, expected, frames):
    version, _, ours = setup
    _, _, z, decoded = expected
    h, w = SIZES[version]
    got = ours["official"].decode(z[:, :, : (frames - 1) // 4 + 1])
    assert got.shape == (1, 3, frames, h, w)
    assert got.dtype == torch.float32 and float(got.abs().max()) <= 1.0
    assert rel_err(got, decoded[:, :, :frames]) <= TOL


@pytest.mark.parametrize("layout", ["comfyui", "diffusers", "dict"])
def test_other_layouts_match_diffusers(setup, expected, layout):
    _, _, ours = setup
    video, latent, z, decoded = expected
    frames = 5 if layout == "diffusers" else 1
    lat = (frames - 1) // 4 + 1
    vae = ours[layout]
    assert rel_err(vae.encode(video[:, :, :frames]), latent[:, :, :lat]) <= TOL
    assert rel_err(vae.decode(z[:, :, :lat]), decoded[:, :, :frames]) <= TOL


def test_normalize_round_trip(setup):
    _, _, ours = setup
    vae = ours["official"]
    mu = torch.randn(2, vae.config.z_dim, 3, 2, 2)
    z = vae.normalize(mu)
    assert torch.allclose(vae.denormalize(z), mu, atol=1e-6)
    mean, std = ref_stats(vae)
    assert torch.allclose(z, (mu - mean) / std)


def test_batch_equals_single_samples(setup):
    version, _, ours = setup
    vae = ours["official"]
    h, w = SIZES[version]
    video = torch.rand(2, 3, 5, h, w) * 2 - 1
    z = vae.encode(video)
    for b in range(2):
        assert rel_err(z[b : b + 1], vae.encode(video[b : b + 1])) <= TOL
    x = vae.decode(z[:, :, :1])
    assert rel_err(x[1:], vae.decode(z[1:, :, :1])) <= TOL
