"""Every conditioning mode end to end on tiny random-weight models: build -> validate -> sample -> decode.

Uses the real wan_core DiT, VAE and sampler (tiny sizes from wan_core.tiny_models).
I2V/FLF2V use the tiny CLIP vision model; the other modes random CLIP-shaped features [N, 17, 64].
"""

import functools

import pytest
import torch
from test_conditioning_helpers import FakeVAE

import wan_core
from wan_core.conditioning import (
    combine_vace,
    flf2v_conditioning,
    fun_control_conditioning,
    fun_inp_conditioning,
    i2v_conditioning,
    t2v_conditioning,
    ti2v_conditioning,
    vace_conditioning,
    validate_conditioning,
)
from wan_core.conditioning.control import canny, fit_frames, resample_video
from wan_core.errors import ConditioningError

try:
    from wan_core.dit.tiny import tiny_dit_state_dict
    from wan_core.sampling import SamplerSettings, sample
    from wan_core.tiny_models import TINY
    from wan_core.vae.tiny import tiny_vae_state_dict
    from wan_core.vision.tiny import tiny_clip_state_dict
except ImportError as exc:  # the other components are written in parallel
    pytest.skip(f"tiny DiT / VAE / sampler not importable yet: {exc}", allow_module_level=True)

SETTINGS = SamplerSettings(steps=2, shift=5.0, cfg=2.0, solver="euler", seed=0)
CLIP_TOKENS = 17


@functools.cache
def dit(variant: str):
    return wan_core.load_dit(tiny_dit_state_dict(variant), device="cpu", dtype=torch.float32)


@functools.cache
def vae(version: str):
    return wan_core.load_vae(tiny_vae_state_dict(version), device="cpu", dtype=torch.float32)


@functools.cache
def clip_vision():
    return wan_core.load_clip_vision(tiny_clip_state_dict(), device="cpu", dtype=torch.float32)


def text() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(5, TINY.text_dim, generator=g)], [torch.randn(3, TINY.text_dim, generator=g)]


def clip(n: int = 1) -> torch.Tensor:
    return torch.randn(n, CLIP_TOKENS, TINY.clip_width, generator=torch.Generator().manual_seed(2))


def run(variant: str, cond, vae_version: str = "2.1") -> torch.Tensor:
    model = dit(variant)
    validate_conditioning(cond, model.config, vae(vae_version).config)
    positive, negative = text()
    latent = sample(model, positive, negative, cond, SETTINGS, device="cpu")
    c, t, h, w = cond.latent_shape
    assert latent.shape == (1, c, t - cond.trim_latent_frames, h, w)
    assert torch.isfinite(latent).all()
    return latent


def image(h: int = 32, w: int = 32, n: int = 1, seed: int = 3) -> torch.Tensor:
    return torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(seed))


def test_t2v_and_decode():
    cond = t2v_conditioning(16, 5, 32, 16, 8)
    latent = run("wan2.1-t2v", cond)
    video = vae("2.1").decode(latent)
    assert video.shape == (1, 3, 5, 16, 32) and torch.isfinite(video).all()


def test_i2v_wan21_with_clip_and_wan22_without():
    start = image(40, 24)
    cond = i2v_conditioning(vae("2.1"), start, 5, 32, 16, clip_fea=clip_vision().encode(start))
    assert cond.clip_fea.shape == (1, CLIP_TOKENS, TINY.clip_width)
    run("wan2.1-i2v", cond)
    run("wan2.2-i2v", cond.with_(clip_fea=None))  # the same y; Wan2.2 I2V takes no CLIP


def test_flf2v_and_fun_inp():
    first, last = image(seed=4), image(seed=5)
    pair = clip_vision().encode_first_last(first, last)  # [1, 2 * tokens, width]
    cond = flf2v_conditioning(vae("2.1"), first, last, 5, 32, 16, clip_fea=pair)
    assert cond.clip_fea.shape == (1, 2 * CLIP_TOKENS, TINY.clip_width)
    run("wan2.1-flf2v", cond)
    run(
        "wan2.1-fun-inp",
        fun_inp_conditioning(vae("2.1"), end_image=image(), frames=5, width=32, height=16, clip_fea=clip()),
    )


def test_ti2v_first_latent_frame_is_the_encoded_image():
    cond = ti2v_conditioning(vae("2.2"), image(48, 80), 5, 64, 32)
    latent = run("wan2.2-ti2v", cond, "2.2")
    assert torch.equal(latent[:, :, 0], cond.frame_lock.latent[:, :, 0].float())
    assert not torch.equal(latent[:, :, 1], cond.frame_lock.latent[:, :, 1].float())


def test_vace_with_references_and_two_inputs_trims():
    frames = image(24, 40, n=5)
    edges = canny(fit_frames(frames, 32, 16, "crop"), 50, 150)
    mask = torch.zeros(5, 16, 32)
    mask[:, 4:12, 8:24] = 1.0
    a = vace_conditioning(vae("2.1"), 5, 32, 16, control_video=edges, strength=0.8, end=0.5)
    b = vace_conditioning(
        vae("2.1"),
        5,
        32,
        16,
        control_video=fit_frames(frames, 32, 16),
        control_mask=mask,
        reference_images=image(seed=9, n=2),
        strength=1.0,
    )
    both = combine_vace(a, b)
    assert both.latent_shape == (16, 2 + 2, 2, 4) and both.trim_latent_frames == 2
    latent = run("wan2.1-vace", both)
    assert latent.shape[2] == 2  # T = 2 latent frames after dropping the 2 reference frames


def test_fun_control():
    control = resample_video(image(16, 32, n=12), src_fps=24, dst_fps=16)  # 12 frames @24 -> 5 @16
    assert control.shape[0] == 5
    cond = fun_control_conditioning(
        vae("2.1"),
        control,
        5,
        32,
        16,
        start_image=image(),
        clip_fea=clip(),
        model_extra_channels=dit("wan2.1-fun-control").config.extra_channels,
    )
    run("wan2.1-fun-control", cond)


def test_real_model_mismatches_name_the_fix():
    # built with the fake VAE (layout only): this test is about the real models' configs
    i2v_cond = i2v_conditioning(FakeVAE(), image(), 5, 32, 16, clip_fea=clip())
    with pytest.raises(ConditioningError, match="t2v model that takes none"):
        validate_conditioning(i2v_cond, dit("wan2.1-t2v").config)
    with pytest.raises(ConditioningError, match="VAE has 48 latent channels .*load wan_2.1_vae.safetensors"):
        validate_conditioning(i2v_cond, dit("wan2.1-i2v").config, vae("2.2").config)
    with pytest.raises(ConditioningError, match="Wan2.2 models use no CLIP"):
        validate_conditioning(i2v_cond, dit("wan2.2-i2v").config)
    with pytest.raises(ConditioningError, match="needs CLIP vision features"):
        validate_conditioning(i2v_cond.with_(clip_fea=None), dit("wan2.1-i2v").config)
    with pytest.raises(ConditioningError, match="no VACE blocks"):
        validate_conditioning(vace_conditioning(FakeVAE(), 5, 32, 16), dit("wan2.1-t2v").config)
    with pytest.raises(ConditioningError, match="load wan2.2_vae.safetensors"):
        validate_conditioning(t2v_conditioning(48, 5, 64, 64, 16), dit("wan2.2-ti2v").config, vae("2.1").config)
