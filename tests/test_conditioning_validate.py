"""validate_conditioning: every model/conditioning mismatch fails with a message that names the fix."""

from types import SimpleNamespace

import pytest
import torch
from test_conditioning_helpers import FakeVAE, dit_config

from wan_core.conditioning import (
    flf2v_conditioning,
    fun_control_conditioning,
    i2v_conditioning,
    t2v_conditioning,
    ti2v_conditioning,
    vace_conditioning,
    validate_conditioning,
)
from wan_core.errors import ConditioningError

IMAGE = torch.rand(1, 32, 32, 3)
CLIP = torch.randn(1, 257, 1280)


def vae_config(z_dim: int) -> SimpleNamespace:
    version, stride = ("2.2", 16) if z_dim == 48 else ("2.1", 8)
    return SimpleNamespace(z_dim=z_dim, version=version, spatial_stride=stride)


def test_matching_pairs_pass():
    vae = FakeVAE()
    validate_conditioning(t2v_conditioning(16, 5, 32, 32, 8), dit_config("t2v"), vae_config(16))
    validate_conditioning(i2v_conditioning(vae, IMAGE, 5, 32, 32, clip_fea=CLIP), dit_config("i2v"), vae_config(16))
    validate_conditioning(i2v_conditioning(vae, IMAGE, 5, 32, 32), dit_config("i2v", "wan2.2", clip_dim=None))
    validate_conditioning(
        flf2v_conditioning(vae, IMAGE, IMAGE, 5, 32, 32, clip_fea=torch.randn(2, 257, 1280)), dit_config("flf2v")
    )
    validate_conditioning(vace_conditioning(vae, 5, 32, 32, reference_images=IMAGE), dit_config("vace"))
    validate_conditioning(fun_control_conditioning(vae, torch.rand(5, 32, 32, 3), 5, 32, 32), dit_config("fun-control"))
    ti2v = ti2v_conditioning(FakeVAE(48, 16, "2.2"), IMAGE, 5, 64, 32)
    validate_conditioning(ti2v, dit_config("ti2v", "wan2.2"), vae_config(48))


def test_vae_channel_mismatch_names_the_vae_file():
    with pytest.raises(
        ConditioningError,
        match=r"VAE has 48 latent channels \(Wan2.2\) but the model .* expects 16 "
        r"\(Wan2.1 VAE\): load wan_2.1_vae.safetensors",
    ):
        validate_conditioning(t2v_conditioning(16, 5, 32, 32, 8), dit_config("t2v"), vae_config(48))
    with pytest.raises(ConditioningError, match="load wan2.2_vae.safetensors"):
        validate_conditioning(t2v_conditioning(48, 5, 64, 64, 16), dit_config("ti2v", "wan2.2"), vae_config(16))


def test_latent_built_with_wrong_vae():
    with pytest.raises(ConditioningError, match="built for 48-channel latents.*wan_2.1_vae"):
        validate_conditioning(t2v_conditioning(48, 5, 64, 64, 16), dit_config("t2v"))


def test_image_for_t2v_model():
    cond = i2v_conditioning(FakeVAE(), IMAGE, 5, 32, 32)
    with pytest.raises(ConditioningError, match="image conditioning .* t2v model that takes none.*I2V"):
        validate_conditioning(cond, dit_config("t2v"))


def test_missing_image_for_i2v_model():
    with pytest.raises(ConditioningError, match="takes 20 image-conditioning channels but none.*start image"):
        validate_conditioning(t2v_conditioning(16, 5, 32, 32, 8), dit_config("i2v", clip_dim=None))


def test_wrong_y_channels():
    cond = i2v_conditioning(FakeVAE(), IMAGE, 5, 32, 32)
    with pytest.raises(ConditioningError, match="has 20 channels but .* expects 32.*fun_control_conditioning"):
        validate_conditioning(cond, dit_config("fun-control"))


def test_clip_for_wan22_and_for_model_without_img_emb():
    cond = i2v_conditioning(FakeVAE(), IMAGE, 5, 32, 32, clip_fea=CLIP)
    with pytest.raises(ConditioningError, match="Wan2.2 models use no CLIP vision.*disconnect clip_vision_output"):
        validate_conditioning(cond, dit_config("i2v", "wan2.2", clip_dim=None))
    vace = vace_conditioning(FakeVAE(), 5, 32, 32).with_(clip_fea=CLIP)
    with pytest.raises(ConditioningError, match="no img_emb"):
        validate_conditioning(vace, dit_config("vace"))


def test_missing_clip_for_wan21_i2v_and_wrong_clip():
    cond = i2v_conditioning(FakeVAE(), IMAGE, 5, 32, 32)
    with pytest.raises(ConditioningError, match="needs CLIP vision features.*clip_vision_h.safetensors"):
        validate_conditioning(cond, dit_config("i2v"))
    with pytest.raises(ConditioningError, match="1024 wide but .* expects 1280"):
        validate_conditioning(cond.with_(clip_fea=torch.randn(1, 257, 1024)), dit_config("i2v"))
    flf = flf2v_conditioning(FakeVAE(), IMAGE, IMAGE, 5, 32, 32, clip_fea=CLIP)
    with pytest.raises(ConditioningError, match="257 tokens .* expects 514: encode both the first and the last"):
        validate_conditioning(flf, dit_config("flf2v"))


def test_vace_inputs_for_non_vace_model():
    cond = vace_conditioning(FakeVAE(), 5, 32, 32)
    with pytest.raises(ConditioningError, match="VACE inputs were given .* no VACE blocks: load a VACE model"):
        validate_conditioning(cond, dit_config("t2v"))


def test_vace_context_shape_mismatch():
    cond = vace_conditioning(FakeVAE(), 5, 32, 32)
    bad = cond.with_(latent_shape=(16, 3, 4, 4))
    with pytest.raises(ConditioningError, match="VACE input 0 covers latent"):
        validate_conditioning(bad, dit_config("vace"))


def test_frame_lock_for_model_without_per_token_timesteps():
    cond = ti2v_conditioning(FakeVAE(48, 16, "2.2"), IMAGE, 5, 64, 32)
    with pytest.raises(ConditioningError, match="per-token timesteps: use wan2.2_ti2v_5B"):
        validate_conditioning(cond, dit_config("t2v", "wan2.2", latent_channels=48))


def test_hand_built_latent_with_half_patches():
    cond = t2v_conditioning(16, 5, 32, 32, 8).with_(latent_shape=(16, 2, 4, 5))
    with pytest.raises(ConditioningError, match="not a whole number of .* patches: use a width and height"):
        validate_conditioning(cond, dit_config("t2v"))
