"""Context windows: schedules against formulas written here, blend weights, slicing, and tiny-DiT runs."""

from __future__ import annotations

import math

import pytest
import torch

import wan_core
from wan_core.conditioning.types import Conditioning, FrameLock, VaceHint
from wan_core.dit.tiny import tiny_dit_state_dict
from wan_core.errors import InputError
from wan_core.sampling import SamplerSettings, sample
from wan_core.sampling.guidance import GuidanceOptions, StepInputs
from wan_core.sampling.windows import (
    BLENDS,
    SCHEDULES,
    ContextWindowing,
    ContextWindows,
    blend_weights,
    freenoise,
    plan_windows,
    window_frames,
    window_inputs,
)

TEXT_DIM = 64


def bit_reversed_fraction(k: int) -> float:
    """k = b_n..b_1 b_0 in binary -> 0.b_0 b_1 ... b_n (written independently of the module's loop)."""
    if k == 0:
        return 0.0
    bits = format(k, "b")
    return int(bits[::-1], 2) / 2 ** len(bits)


def expected_windows(n: int, m: int, o: int, schedule: str, k: int) -> list[list[int]]:
    d = m - o
    if schedule == "batched":
        return [list(range(s, min(s + m, n))) for s in range(0, n, m)]
    if n <= m:
        return [list(range(n))]
    shift = math.floor(bit_reversed_fraction(k) * d)
    if schedule == "looped":
        return [[(shift + j * d + i) % n for i in range(m)] for j in range(-(-n // d))]
    if schedule == "static":
        shift = 0
    starts = {0, n - m}
    s = shift
    while s < n - m:
        if s > 0:
            starts.add(s)
        s += d
    return [list(range(s, s + m)) for s in sorted(starts)]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("n,m,o", [(41, 21, 6), (61, 21, 5), (20, 8, 3), (21, 21, 6), (9, 21, 6), (13, 5, 0)])
def test_window_indices_follow_the_formula(schedule, n, m, o):
    for k in range(6):
        got = window_frames(n, m, o, schedule, k)
        assert got == expected_windows(n, m, o, schedule, k), (schedule, n, m, o, k)
        assert set().union(*map(set, got)) == set(range(n))  # every frame is covered
        if schedule != "batched" and n > m:
            for a, b in zip(got, got[1:]):
                assert len(set(a) & set(b)) >= o  # neighbours share at least the overlap


def test_uniform_windows_move_between_steps_and_static_ones_do_not():
    static = {tuple(map(tuple, window_frames(61, 21, 6, "static", k))) for k in range(4)}
    uniform = {tuple(map(tuple, window_frames(61, 21, 6, "uniform", k))) for k in range(4)}
    assert len(static) == 1 and len(uniform) > 1


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("prefix", [0, 1, 2])
def test_blend_weights_sum_to_one_per_frame(schedule, blend, prefix):
    options = ContextWindows(length=9, overlap=3, schedule=schedule, blend=blend)
    for k in range(4):
        plan = plan_windows(options, 37, prefix, k)
        total = torch.zeros(37)
        for window in plan:
            assert len(window.frames) == len(window.positions) == window.weights.numel()
            assert len(window.frames) <= options.length and window.frames[:prefix] == tuple(range(prefix))
            assert bool((window.weights > 0).all())
            total[list(window.frames)] += window.weights
        assert torch.allclose(total, torch.ones(37), atol=1e-6), (schedule, blend, prefix, k, total)


def test_linear_weights_ramp_over_the_overlap():
    """Two static windows [0, 8) and [5, 13): the 3 shared frames cross-fade 3/4, 1/2, 1/4."""
    windows = window_frames(13, 8, 3, "static", 0)
    assert windows == [list(range(0, 8)), list(range(5, 13))]
    first, second = blend_weights(windows, 13, 3, "linear", looped=False)
    assert first.tolist() == pytest.approx([1, 1, 1, 1, 1, 0.75, 0.5, 0.25])
    assert second.tolist() == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 1, 1])
    p1, p2 = blend_weights(windows, 13, 3, "pyramid", looped=False)
    # pyramid raw weights min(p+1, 8-p); shared frames 5,6,7: (3,2,1) vs (1,2,3)
    assert p1[5:].tolist() == pytest.approx([3 / 4, 2 / 4, 1 / 4]) and p2[:3].tolist() == pytest.approx(
        [1 / 4, 2 / 4, 3 / 4]
    )


def test_looped_windows_wrap_correctly():
    options = ContextWindows(length=8, overlap=3, schedule="looped")
    n = 20
    for k in range(4):
        plan = plan_windows(options, n, 0, k)
        wrapped = [w for w in plan if w.frames[-1] < w.frames[0]]
        assert wrapped, "some window must cross the end of the video"
        for window in plan:
            # consecutive frames modulo n, positions counting on past the end (no jump at the seam)
            assert all((b - a) % n == 1 for a, b in zip(window.frames, window.frames[1:]))
            assert list(window.positions) == list(range(window.positions[0], window.positions[0] + 8))
            assert window.positions[0] % n == window.frames[0]
        # the last frame and the first are denoised together, with non-zero weight on both
        seam = [w for w in wrapped if n - 1 in w.frames and 0 in w.frames]
        assert seam and all(float(w.weights[w.frames.index(0)]) > 0 for w in seam)


def test_looped_window_slices_x_across_the_seam():
    x = torch.arange(20.0).reshape(1, 1, 20, 1, 1)
    seen = []

    def predict(xw, inputs):
        seen.append(xw.flatten().tolist())
        return torch.zeros_like(xw)

    cond = Conditioning(latent_shape=(1, 20, 1, 1))
    windowing = ContextWindowing(ContextWindows(length=8, overlap=3, schedule="looped"), cond)
    windowing.velocity(predict, x, StepInputs(torch.zeros(1), [], None, {}), 1, lambda: None)
    assert [18.0, 19.0, 0.0, 1.0] in [s[i : i + 4] for s in seen for i in range(len(s) - 3)]


def test_window_inputs_slice_time_aligned_conditioning():
    T, tokens = 10, 4
    t = torch.arange(T * tokens, dtype=torch.float32).reshape(1, -1)
    y = torch.randn(1, 20, T, 4, 4)
    vace = [torch.randn(1, 96, T, 4, 4), torch.randn(1, 96, T, 4, 4)]
    camera = torch.randn(1, 24, T, 32, 32)
    clip = torch.randn(1, 17, 64)
    extras = {"y": y, "vace_context": vace, "vace_scale": [1.0, 0.5], "camera": camera, "clip_fea": clip}
    window = plan_windows(ContextWindows(length=4, overlap=1, schedule="static"), T, 0, 0)[1]
    frames = list(window.frames)
    out = window_inputs(StepInputs(t, [], None, extras), window, T)
    assert torch.equal(out.t, t.reshape(1, T, tokens)[:, frames].reshape(1, -1))
    assert torch.equal(out.extras["y"], y[:, :, frames]) and torch.equal(out.extras["camera"], camera[:, :, frames])
    assert all(torch.equal(a, b[:, :, frames]) for a, b in zip(out.extras["vace_context"], vace))
    assert out.extras["clip_fea"] is clip and out.extras["vace_scale"] == [1.0, 0.5]
    assert out.extras["frame_positions"] == tuple(frames)  # real positions, not 0..3
    reset = plan_windows(ContextWindows(length=4, overlap=1, schedule="static", positions="reset"), T, 0, 0)[1]
    assert "frame_positions" not in window_inputs(StepInputs(t, [], None, extras), reset, T).extras


def test_options_are_checked():
    with pytest.raises(InputError, match="schedule"):
        ContextWindows(schedule="random")
    with pytest.raises(InputError, match="overlap"):
        ContextWindows(length=4, overlap=4)
    cond = Conditioning(latent_shape=(16, 30, 4, 4), y=torch.zeros(1, 20, 30, 4, 4), trim_latent_frames=1)
    with pytest.raises(InputError, match="prefix"):
        ContextWindowing(ContextWindows(length=2, overlap=0, image="every"), cond)


def test_freenoise_reuses_earlier_noise_in_shuffled_order():
    noise = torch.randn(1, 2, 30, 3, 3)
    cond = Conditioning(latent_shape=(2, 30, 3, 3))
    options = ContextWindows(length=10, overlap=4, schedule="static", freenoise=True)
    out = freenoise(noise, options, cond, seed=7)
    assert torch.equal(out, freenoise(noise, options, cond, seed=7))
    assert not torch.equal(out, freenoise(noise, options, cond, seed=8))
    assert torch.equal(out[:, :, :10], noise[:, :, :10])  # the first window keeps its own noise
    for start in range(10, 30, 6):  # frames [s, s+6) are a permutation of frames [s-10, s-4)
        size = min(6, 30 - start)
        got = sorted(out[0, 0, start : start + size, 0, 0].tolist())
        assert got == sorted(out[0, 0, start - 10 : start - 10 + size, 0, 0].tolist())
    assert freenoise(noise, ContextWindows(length=10, overlap=4), cond, 7) is noise  # off by default


# ------------------------------------------------------------------ with the tiny DiT


def _dit(variant: str):
    return wan_core.load_dit(tiny_dit_state_dict(variant, seed=1), device="cpu", dtype="fp32")


def _text(seed: int) -> list[torch.Tensor]:
    return [torch.randn(7, TEXT_DIM, generator=torch.Generator().manual_seed(seed))]


@pytest.fixture(scope="module")
def t2v():
    return _dit("wan2.1-t2v")


def test_one_window_covering_everything_is_bit_identical(t2v):
    cond = Conditioning(latent_shape=(16, 6, 4, 4))
    base = SamplerSettings(steps=2, shift=5.0, cfg=4.0, seed=3)
    plain = sample(t2v, _text(1), _text(2), cond, base)
    for schedule in SCHEDULES:
        for length in (6, 10):
            options = ContextWindows(length=length, overlap=2, schedule=schedule, blend="pyramid", freenoise=True)
            settings = SamplerSettings(**{**vars(base), "context_windows": options})
            assert torch.equal(sample(t2v, _text(1), _text(2), cond, settings), plain), (schedule, length)
    short = ContextWindows(length=4, overlap=2, schedule="static")
    changed = sample(t2v, _text(1), _text(2), cond, SamplerSettings(**{**vars(base), "context_windows": short}))
    assert changed.shape == plain.shape and not torch.equal(changed, plain)


def _spy_dit(fn, model):
    """A recording function dressed as a DiT (the sampler's DiTLike contract): the model's config and device."""
    fn.config, fn.device, fn.dtype, fn.to = model.config, model.device, model.dtype, lambda device: fn
    return fn


def test_windows_run_the_dit_on_windows_only(t2v):
    calls = []

    def spy(x, t, context, **extras):
        calls.append((x.shape[2], extras.get("frame_positions")))
        return t2v(x, t, context, **extras)

    spy = _spy_dit(spy, t2v)
    cond = Conditioning(latent_shape=(16, 12, 4, 4))
    options = ContextWindows(length=5, overlap=2, schedule="static")
    sample(spy, _text(1), None, cond, SamplerSettings(steps=2, cfg=1.0, context_windows=options))
    frames = window_frames(12, 5, 2, "static", 0)
    assert [c[0] for c in calls] == [5] * len(frames) * 2
    assert [c[1] for c in calls[: len(frames)]] == [None] + [tuple(w) for w in frames[1:]]


def test_windows_keep_the_step_so_guidance_options_apply(t2v):
    """zero_init_steps / cfg ranges read the step index: each window must see the loop's step, not step 0 of 1."""
    calls = []

    def spy(x, t, context, **extras):
        calls.append(x.shape[0])
        return t2v(x, t, context, **extras)

    spy = _spy_dit(spy, t2v)
    cond = Conditioning(latent_shape=(16, 12, 4, 4))
    options = ContextWindows(length=5, overlap=2, schedule="static")
    guidance = GuidanceOptions(zero_init_steps=1)
    sample(spy, _text(1), None, cond, SamplerSettings(steps=3, cfg=1.0, context_windows=options, guidance=guidance))
    windows = len(window_frames(12, 5, 2, "static", 0))
    assert len(calls) == 2 * windows  # step 0 zeroed, steps 1 and 2 run every window


def test_image_every_window_joins_the_start_frame_and_positions_matter():
    i2v = _dit("wan2.1-i2v")
    y = torch.randn(1, 20, 9, 4, 4)
    cond = Conditioning(latent_shape=(16, 9, 4, 4), y=y, clip_fea=torch.randn(1, 17, 64))
    seen = []

    def spy(x, t, context, **extras):
        seen.append((extras["y"][:, :, 0].clone(), extras.get("frame_positions")))
        return i2v(x, t, context, **extras)

    spy = _spy_dit(spy, i2v)
    runs = {}
    for positions in ("real", "reset"):
        options = ContextWindows(length=4, overlap=1, schedule="static", image="every", positions=positions)
        runs[positions] = sample(spy, _text(1), None, cond, SamplerSettings(steps=2, cfg=1.0, context_windows=options))
    assert all(torch.equal(y0, y[:, :, 0]) for y0, _ in seen)  # every window sees the image frame first
    assert any(p is not None and p[0] == 0 and p[1] > 1 for _, p in seen)  # real: a gap after the image frame
    assert not torch.allclose(runs["real"], runs["reset"])


def test_ti2v_per_token_timesteps_are_sliced():
    ti2v = _dit("wan2.2-ti2v")
    mask = torch.ones(1, 1, 8, 1, 1)
    mask[:, :, 0] = 0
    lock = FrameLock(latent=torch.randn(1, 48, 8, 4, 4), mask=mask)
    cond = Conditioning(latent_shape=(48, 8, 4, 4), frame_lock=lock)
    for image in ("first", "every"):  # every: the locked frame joins each window (t = 0 on its tokens)
        options = ContextWindows(length=4, overlap=1, schedule="static", image=image)
        out = sample(ti2v, _text(1), None, cond, SamplerSettings(steps=2, cfg=1.0, context_windows=options))
        assert out.shape == (1, 48, 8, 4, 4) and torch.equal(out[:, :, 0], lock.latent[:, :, 0])
        assert torch.isfinite(out).all()
    window = plan_windows(options, 8, 1, 0)[1]
    t = lock.token_mask((8, 4, 4)).reshape(1, -1) * 700.0
    sliced = window_inputs(StepInputs(t, [], None, {}), window, 8).t.reshape(1, len(window.frames), -1)
    assert window.frames[0] == 0 and float(sliced[0, 0].abs().max()) == 0.0 and float(sliced[0, 1].min()) == 700.0


def test_vace_references_join_every_window_and_controls_are_sliced():
    vace = _dit("wan2.1-vace")
    context = torch.randn(1, 96, 10, 4, 4)
    cond = Conditioning(latent_shape=(16, 10, 4, 4), vace=(VaceHint(context),), trim_latent_frames=1)
    seen = []

    def spy(x, t, context_, **extras):
        seen.append(extras["vace_context"][0])
        return vace(x, t, context_, **extras)

    spy = _spy_dit(spy, vace)
    options = ContextWindows(length=4, overlap=1, schedule="static")
    out = sample(spy, _text(1), None, cond, SamplerSettings(steps=1, cfg=1.0, context_windows=options))
    assert out.shape == (1, 16, 9, 4, 4)
    plan = plan_windows(options, 10, 1, 0)
    assert len(seen) == len(plan)
    for got, window in zip(seen, plan):
        assert window.frames[0] == 0 and torch.equal(got, context[:, :, list(window.frames)])
