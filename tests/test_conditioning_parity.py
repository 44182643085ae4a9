"""Parity of the I2V / FLF2V / VACE conditioning layouts with diffusers' Wan pipelines.

Both sides encode with the same tiny diffusers ``AutoencoderKLWan`` (random weights);
ours sees it through a wrapper that returns the normalised mean, as wan_core VAEs do.
diffusers' ``prepare_latents`` / ``prepare_video_latents`` / ``prepare_masks`` are
called unbound on a stand-in pipeline object, so no transformer or text encoder is built.
"""

from types import SimpleNamespace

import pytest
import torch
from conftest import rel_err
from diffusers import AutoencoderKLWan
from diffusers.pipelines.wan.pipeline_wan_i2v import WanImageToVideoPipeline
from diffusers.pipelines.wan.pipeline_wan_vace import WanVACEPipeline

from wan_core.conditioning import flf2v_conditioning, i2v_conditioning, vace_conditioning

H, W, FRAMES = 16, 32, 5


class NormalisedVAE:
    """wan_core's VAE contract on top of a diffusers VAE: encode -> (mean - latents_mean) / latents_std."""

    def __init__(self, vae: AutoencoderKLWan):
        self.vae = vae
        self.config = SimpleNamespace(z_dim=vae.config.z_dim, spatial_stride=8, version="2.1")

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.vae.config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(self.vae.config.latents_std).view(1, -1, 1, 1, 1)
        with torch.no_grad():
            return (self.vae.encode(video).latent_dist.mode() - mean) / std


@pytest.fixture(scope="module")
def vaes():
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=16, z_dim=16).eval()
    pipe = SimpleNamespace(
        vae=vae,
        vae_scale_factor_temporal=4,
        vae_scale_factor_spatial=8,
        config=SimpleNamespace(expand_timesteps=False),
        _execution_device=torch.device("cpu"),
        transformer=SimpleNamespace(config=SimpleNamespace(patch_size=(1, 2, 2))),
    )
    return NormalisedVAE(vae), pipe


def _signed(images: torch.Tensor) -> torch.Tensor:
    return images.permute(0, 3, 1, 2) * 2 - 1  # [N, 3, H, W] in [-1, 1]


def _diffusers_i2v_y(pipe, first, last=None) -> torch.Tensor:
    with torch.no_grad():
        _, y = WanImageToVideoPipeline.prepare_latents(
            pipe,
            _signed(first),
            1,
            16,
            H,
            W,
            FRAMES,
            torch.float32,
            torch.device("cpu"),
            None,
            latents=torch.zeros(1, 16, 2, H // 8, W // 8),
            last_image=None if last is None else _signed(last),
        )
    return y


def test_i2v_matches_diffusers(vaes):
    ours_vae, pipe = vaes
    image = torch.rand(1, H, W, 3)
    ours = i2v_conditioning(ours_vae, image, FRAMES, W, H)
    ref = _diffusers_i2v_y(pipe, image)
    assert ours.y.shape == ref.shape == (1, 20, 2, H // 8, W // 8)
    assert torch.equal(ours.y[:, :4], ref[:, :4])
    assert rel_err(ours.y, ref) < 1e-5


def test_flf2v_matches_diffusers(vaes):
    ours_vae, pipe = vaes
    first, last = torch.rand(1, H, W, 3), torch.rand(1, H, W, 3)
    ours = flf2v_conditioning(ours_vae, first, last, FRAMES, W, H)
    ref = _diffusers_i2v_y(pipe, first, last)
    assert torch.equal(ours.y[:, :4], ref[:, :4])
    assert rel_err(ours.y, ref) < 1e-5


def test_vace_matches_diffusers(vaes):
    ours_vae, pipe = vaes
    video = torch.rand(FRAMES, H, W, 3)
    mask = torch.zeros(FRAMES, H, W)
    mask[:, 3:11, 5:21] = 1.0  # regenerate a box, not aligned to the 8x8 blocks
    ref_image = torch.rand(1, H, W, 3)
    ours = vace_conditioning(ours_vae, FRAMES, W, H, control_video=video, control_mask=mask, reference_images=ref_image)
    video_d = _signed(video).permute(1, 0, 2, 3)[None]  # [1, 3, F, H, W]
    mask_d = mask[None, None]  # [1, 1, F, H, W]
    refs = [[_signed(ref_image)[0]]]
    with torch.no_grad():
        latents = WanVACEPipeline.prepare_video_latents(pipe, video_d, mask_d, refs, None, torch.device("cpu"))
        masks = WanVACEPipeline.prepare_masks(pipe, mask_d, refs, None)
    ref = torch.cat([latents, masks], dim=1)
    ctx = ours.vace[0].context
    assert ctx.shape == ref.shape == (1, 96, 3, H // 8, W // 8)
    assert torch.equal(ctx[:, 32:], ref[:, 32:])
    assert rel_err(ctx, ref) < 1e-5
    assert ours.trim_latent_frames == 1 and ours.latent_shape == (16, 3, H // 8, W // 8)
