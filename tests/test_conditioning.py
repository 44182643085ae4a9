"""Conditioning builders against the spec's formulas (section 8), with a fake VAE (layout only)."""

import logging

import pytest
import torch
import torch.nn.functional as F
from test_conditioning_helpers import FakeVAE

from wan_core.conditioning import (
    best_output_size,
    check_frames,
    flf2v_conditioning,
    fun_control_conditioning,
    fun_inp_conditioning,
    i2v_conditioning,
    official_i2v_size,
    t2v_conditioning,
    ti2v_conditioning,
)
from wan_core.conditioning.image import lanczos_cover_crop
from wan_core.errors import InputError
from wan_core.validation import check_size_multiple


def spec_i2v_mask(known_frames: list[int], frames: int) -> torch.Tensor:
    """Spec 8.1 step 4 in words: latent frame 0 = pixel frame 0 on all 4 channels; channel c of
    latent frame t >= 1 = pixel frame 4t + c - 3. Returns [4, T]."""
    t_count = (frames - 1) // 4 + 1
    out = torch.zeros(4, t_count)
    for t in range(t_count):
        for c in range(4):
            pixel = 0 if t == 0 else 4 * t + c - 3
            out[c, t] = 1.0 if pixel in known_frames else 0.0
    return out


def test_check_frames_accepts_4n_plus_1_and_names_neighbours(caplog):
    assert check_frames(81) == 81 and check_frames(1) == 1 and check_frames(121) == 121
    with pytest.raises(InputError, match="4n\\+1.*got 80: use 77 or 81"):
        check_frames(80)
    with pytest.raises(InputError, match="frames is 0 but must be a whole number at least 1"):
        check_frames(0)
    with caplog.at_level(logging.WARNING):
        assert check_frames(80, auto_round=True) == 81
        assert check_frames(78, auto_round=True) == 77
    assert "not 4n+1" in caplog.text


def test_check_size_multiples():
    assert check_size_multiple(832, 480, 16) == (832, 480)
    with pytest.raises(InputError, match="500x480 is not a multiple of 16.*use e.g. 496x480"):
        check_size_multiple(500, 480, 16)
    with pytest.raises(InputError, match="1280x720 is not a multiple of 32"):
        check_size_multiple(1280, 720, 32)  # TI2V-5B needs 32
    with pytest.raises(InputError, match="height is 8 but must be at least 16"):
        check_size_multiple(64, 8, 16)


def test_t2v_latent_shape_follows_frame_and_stride_rules():
    assert t2v_conditioning(16, 81, 832, 480, 8).latent_shape == (16, 21, 60, 104)
    assert t2v_conditioning(48, 121, 1280, 704, 16).latent_shape == (48, 31, 44, 80)


def test_official_sizes():
    # spec 7.5/8.1: 1280x720 max area for a 16:9 image gives 1280x720; TI2V 704*1280 area for 16:9 input.
    assert official_i2v_size(720, 1280, 1280 * 720) == (1280, 720)
    # by hand: float size 1265.7 x 711.9; width first -> 1248 x 704 (aspect off by 0.3 %),
    # height first -> 1280 x 704 (off by 2.3 %): the first wins
    assert best_output_size(1280, 720, 32, 32, 704 * 1280) == (1248, 704)
    assert best_output_size(704, 1280, 32, 32, 704 * 1280) == (704, 1280)


def test_i2v_mask_latent_and_channels():
    vae = FakeVAE()
    image = torch.rand(1, 40, 56, 3)
    cond = i2v_conditioning(vae, image, frames=17, width=64, height=48, clip_fea=torch.randn(1, 257, 1280))
    assert cond.latent_shape == (16, 5, 6, 8)
    assert cond.y.shape == (1, 4 + 16, 5, 6, 8)
    mask = cond.y[0, :4, :, 0, 0]
    assert torch.equal(mask, spec_i2v_mask([0], 17))
    assert torch.all(cond.y[0, :4] == cond.y[0, :4, :, :1, :1])  # spatially constant
    # condition video = [bicubic-resized image, zeros x 16], encoded as one video
    resized = F.interpolate(image.permute(0, 3, 1, 2) * 2 - 1, size=(48, 64), mode="bicubic", align_corners=False)
    video = torch.zeros(1, 3, 17, 48, 64)
    video[0, :, 0] = resized[0]
    assert torch.allclose(cond.y[:, 4:], FakeVAE().encode(video))
    assert cond.clip_fea.shape == (1, 257, 1280)


def test_i2v_crop_mode_keeps_aspect():
    vae = FakeVAE()
    image = torch.zeros(1, 32, 128, 3)
    image[:, :, 48:80] = 1.0  # a white center band 32 px wide, 128 wide image
    crop = i2v_conditioning(vae, image, frames=5, width=32, height=32, resize="crop")
    stretch = i2v_conditioning(vae, image, frames=5, width=32, height=32, resize="official")
    # cropping to 1:1 keeps only the white center; stretching mixes in the black sides
    assert crop.y[0, 4, 0].mean() > stretch.y[0, 4, 0].mean() + 0.5


def test_flf2v_mask_last_latent_frame():
    vae = FakeVAE()
    first, last = torch.rand(1, 48, 64, 3), torch.rand(1, 96, 128, 3)
    cond = flf2v_conditioning(vae, first, last, frames=21, width=64, height=48, clip_fea=torch.randn(2, 257, 1280))
    mask = cond.y[0, :4, :, 0, 0]
    assert torch.equal(mask, spec_i2v_mask([0, 20], 21))
    assert mask[:, -1].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert mask[:, 0].tolist() == [1.0] * 4 and mask[:, 1:-1].sum() == 0
    assert cond.clip_fea.shape == (1, 514, 1280)


def test_fun_inp_variants():
    vae = FakeVAE()
    none = fun_inp_conditioning(vae, frames=9, width=32, height=32)
    assert none.y.shape == (1, 20, 3, 4, 4) and none.y[:, :4].sum() == 0
    end_only = fun_inp_conditioning(vae, end_image=torch.rand(1, 32, 32, 3), frames=9, width=32, height=32)
    assert torch.equal(end_only.y[0, :4, :, 0, 0], spec_i2v_mask([8], 9))


def test_ti2v_frame_lock_and_manual_loop():
    vae = FakeVAE(z_dim=48, stride=16, version="2.2")
    image = torch.rand(1, 50, 90, 3)
    cond = ti2v_conditioning(vae, image, frames=9, width=64, height=32)
    assert cond.latent_shape == (48, 3, 2, 4) and cond.y is None
    lock = cond.frame_lock
    expected = FakeVAE(48, 16).encode(lanczos_cover_crop(image[0], 64, 32)[None, :, None])
    assert torch.equal(lock.latent[:, :, :1], expected)
    assert lock.mask.flatten().tolist() == [0.0, 1.0, 1.0]
    # per-token timesteps: tokens of latent frame 0 (h/2 * w/2 = 2) get 0, the rest t
    tt = lock.token_timesteps(torch.tensor([500.0]))
    assert tt.shape == (1, 3 * 1 * 2) and tt[0, :2].tolist() == [0.0, 0.0] and bool((tt[0, 2:] == 500).all())
    # a manual Euler loop: the sampler re-applies the lock after every step
    x = lock.apply(torch.randn(1, *cond.latent_shape))
    for _ in range(4):
        x = lock.apply(x + 0.3 * torch.randn_like(x))
    assert torch.equal(x[:, :, 0], expected[:, :, 0])
    assert not torch.equal(x[:, :, 1], lock.latent[:, :, 1])
    assert ti2v_conditioning(vae, None, 9, 64, 32).frame_lock is None


def test_ti2v_rejects_wan21_vae_and_bad_size():
    with pytest.raises(InputError, match="wan2.2_vae.safetensors"):
        ti2v_conditioning(FakeVAE(16, 8), torch.rand(1, 32, 32, 3), 5, 64, 32)
    with pytest.raises(InputError, match="multiple of 32"):
        ti2v_conditioning(FakeVAE(48, 16), None, 5, 48, 32)


def test_fun_control_layouts():
    vae = FakeVAE()
    control = torch.rand(7, 32, 32, 3)  # 7 frames -> 5 usable (4n+1) -> 2 latent frames of 5
    start = torch.rand(1, 32, 32, 3)
    cond = fun_control_conditioning(vae, control, frames=17, width=32, height=32, start_image=start)
    assert cond.y.shape == (1, 32, 5, 4, 4)
    control_latent = FakeVAE().encode(control[:5].permute(3, 0, 1, 2)[None] * 2 - 1)
    assert torch.allclose(cond.y[:, :16, :2], control_latent)
    assert cond.y[:, :16, 2:].abs().sum() == 0  # missing control frames are zero latents
    start_latent = FakeVAE().encode(start.permute(3, 0, 1, 2)[None] * 2 - 1)
    assert torch.allclose(cond.y[:, 16:, :1], start_latent) and cond.y[:, 16:, 1:].abs().sum() == 0
    no_start = fun_control_conditioning(vae, control, frames=17, width=32, height=32)
    assert no_start.y[:, 16:].abs().sum() == 0
    wan22 = fun_control_conditioning(vae, control, 17, 32, 32, start_image=start, model_extra_channels=36)
    assert wan22.y.shape[1] == 36
    assert torch.equal(wan22.y[0, 16:20, :, 0, 0], spec_i2v_mask([0], 17))
    assert torch.allclose(wan22.y[:, 20:], cond.y[:, 16:])
    with pytest.raises(InputError, match="extra channels"):
        fun_control_conditioning(vae, control, 17, 32, 32, model_extra_channels=20)


def test_lanczos_cover_crop_matches_pil():
    import numpy as np
    from PIL import Image

    image = torch.rand(50, 90, 3)
    ours = lanczos_cover_crop(image, 64, 32)
    # independent: PIL on the 8-bit image, scale to cover, then crop the middle
    pil = Image.fromarray((image.numpy() * 255).round().astype("uint8"))
    scale = max(64 / 90, 32 / 50)
    size = (round(90 * scale), round(50 * scale))
    pil = pil.resize(size, Image.LANCZOS)
    x0, y0 = (size[0] - 64) // 2, (size[1] - 32) // 2
    ref = torch.from_numpy(np.asarray(pil.crop((x0, y0, x0 + 64, y0 + 32)), dtype=np.float32))
    assert torch.allclose(ours, (ref / 255.0).permute(2, 0, 1) * 2 - 1, atol=1e-6)
