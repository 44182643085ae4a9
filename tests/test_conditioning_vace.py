"""VACE conditioning (spec 8.4) with a fake VAE: 96 channels, 8x8 mask layout, references and trimming."""

import pytest
import torch
from test_conditioning_helpers import FakeVAE

from wan_core.conditioning import combine_vace, vace_conditioning
from wan_core.errors import ConditioningError, InputError


def spec_mask_channels(mask: torch.Tensor, stride: int = 8) -> torch.Tensor:
    """Spec: channel = row_offset * 8 + col_offset holds pixel (y*8 + row_offset, x*8 + col_offset). [64, F, h, w]."""
    frames, height, width = mask.shape
    out = torch.zeros(stride * stride, frames, height // stride, width // stride)
    for r in range(stride):
        for c in range(stride):
            out[r * stride + c] = mask[:, r::stride, c::stride]
    return out


def test_vace_defaults_and_shapes():
    cond = vace_conditioning(FakeVAE(), frames=9, width=32, height=16)
    assert cond.latent_shape == (16, 3, 2, 4) and cond.trim_latent_frames == 0
    (hint,) = cond.vace
    assert hint.context.shape == (1, 96, 3, 2, 4)
    assert bool((hint.context[:, 32:] == 1).all())  # no mask given -> generate everywhere
    # no video -> zeros; inactive = zeros * (1 - 1), reactive = zeros * 1: both encode a grey video
    grey = FakeVAE().encode(torch.zeros(1, 3, 9, 16, 32))
    assert torch.allclose(hint.context[:, :16], grey) and torch.allclose(hint.context[:, 16:32], grey)


def test_vace_inactive_reactive_and_mask_layout():
    video = torch.rand(9, 16, 32, 3)
    mask = (torch.rand(9, 16, 32) > 0.5).float() * 0.8 + 0.1  # 0.1 / 0.9: binarised at 0.5
    cond = vace_conditioning(
        FakeVAE(), 9, 32, 16, control_video=video, control_mask=mask, strength=0.7, start=0.1, end=0.6
    )
    (hint,) = cond.vace
    assert (hint.strength, hint.start, hint.end) == (0.7, 0.1, 0.6)
    binary = (mask > 0.5).float()
    signed = video.permute(3, 0, 1, 2) * 2 - 1  # [3, F, H, W]
    inactive = FakeVAE().encode((signed * (1 - binary))[None])
    reactive = FakeVAE().encode((signed * binary)[None])
    assert torch.allclose(hint.context[:, :16], inactive) and torch.allclose(hint.context[:, 16:32], reactive)
    # time: nearest-exact from F = 9 to T = 3 picks pixel frames floor((t + 0.5) * 9 / 3) = 1, 4, 7
    expected = spec_mask_channels(binary)[:, [1, 4, 7]]
    assert torch.equal(hint.context[0, 32:], expected)


def test_vace_reference_images_prepend_and_trim():
    refs = torch.rand(2, 16, 32, 3)
    video = torch.rand(5, 16, 32, 3)
    cond = vace_conditioning(FakeVAE(), 5, 32, 16, control_video=video, reference_images=refs)
    assert cond.latent_shape == (16, 2 + 2, 2, 4) and cond.trim_latent_frames == 2
    ctx = cond.vace[0].context
    assert ctx.shape == (1, 96, 4, 2, 4)
    ref0 = FakeVAE().encode(refs[:1].permute(3, 0, 1, 2)[None] * 2 - 1)
    assert torch.allclose(ctx[:, :16, :1], ref0)
    assert ctx[:, 16:32, :2].abs().sum() == 0 and ctx[:, 32:, :2].abs().sum() == 0
    assert bool((ctx[:, 32:, 2:] == 1).all())


def test_vace_reference_of_other_size_is_centered_on_white():
    ref = torch.zeros(1, 16, 16, 3)  # black square, placed on a white 32x16 canvas
    cond = vace_conditioning(FakeVAE(), 5, 32, 16, reference_images=ref)
    canvas = torch.ones(3, 1, 16, 32)
    canvas[:, :, :, 8:24] = -1.0
    assert torch.allclose(cond.vace[0].context[:, :16, :1], FakeVAE().encode(canvas[None]))


def test_vace_shorter_control_video_is_padded_with_generate_mask():
    cond = vace_conditioning(
        FakeVAE(), 9, 32, 16, control_video=torch.rand(3, 16, 32, 3), control_mask=torch.zeros(3, 16, 32)
    )
    mask_frames = cond.vace[0].context[0, 32:, :, 0, 0]  # [64, T]
    assert mask_frames[:, 0].sum() == 0 and bool((mask_frames[:, 2] == 1).all())


def test_combine_vace_keeps_strengths_and_aligns_references():
    vae = FakeVAE()
    a = vace_conditioning(vae, 5, 32, 16, reference_images=torch.rand(1, 16, 32, 3), strength=0.5)
    b = vace_conditioning(vae, 5, 32, 16, control_video=torch.rand(5, 16, 32, 3), strength=1.2, start=0.0, end=0.5)
    both = combine_vace(b, a)
    assert [h.strength for h in both.vace] == [1.2, 0.5]
    assert both.trim_latent_frames == 1 and both.latent_shape == (16, 3, 2, 4)
    assert all(h.context.shape == (1, 96, 3, 2, 4) for h in both.vace)
    assert both.vace[0].context[:, :, :1].abs().sum() == 0  # b got one empty frame in front
    assert torch.equal(both.vace[0].context[:, :, 1:], b.vace[0].context)
    other = vace_conditioning(vae, 9, 32, 16)
    with pytest.raises(ConditioningError, match="same frames, width and height"):
        combine_vace(a, other)


def test_vace_rejects_z48_vae_and_bad_ranges():
    with pytest.raises(ConditioningError, match="wan_2.1_vae.safetensors"):
        vace_conditioning(FakeVAE(48, 16, "2.2"), 5, 64, 32)
    with pytest.raises(InputError, match="start"):
        vace_conditioning(FakeVAE(), 5, 32, 16, start=0.8, end=0.2)
