"""Long videos end to end on tiny models: 161-frame windowed runs, continuation (builders, join,
colour match, pipeline, CLI --extend) and Fun-Camera generation in both checkpoint layouts."""

from __future__ import annotations

import pytest
import torch

import wan_core
from wan_core.cli import main
from wan_core.conditioning import continuation_conditioning, join_continuation, match_colors, preset_trajectory
from wan_core.conditioning.latents import pixel_to_latent_mask
from wan_core.dit.tiny import tiny_dit_config
from wan_core.errors import ConditioningError, InputError
from wan_core.longvideo import extend_video
from wan_core.pipeline import GenerateParams, WanPipeline
from wan_core.sampling.windows import ContextWindows
from wan_core.tiny_build import write_tiny_models
from wan_core.video_io import read_video, write_video

T2V = "wan2.1_t2v_1.3B_bf16.safetensors"
I2V = "wan2.1_i2v_480p_14B_bf16.safetensors"
VACE = "wan2.1_vace_1.3B_fp16.safetensors"
CAM21 = "wan2.1_fun_camera_v1.1_1.3B_bf16.safetensors"
CAM22_HIGH = "wan2.2_fun_camera_high_noise_14B_fp8_scaled.safetensors"
CAM22_LOW = "wan2.2_fun_camera_low_noise_14B_fp8_scaled.safetensors"
VAE21, VAE22 = "wan_2.1_vae.safetensors", "wan2.2_vae.safetensors"
TE, CLIP = "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "clip_vision_h.safetensors"
SMALL = {"width": 32, "height": 32, "steps": 2}
LONG = {"width": 16, "height": 16, "steps": 2}  # 161 frames: the smallest size keeps the VAE passes cheap


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    names = (T2V, I2V, VACE, CAM21, CAM22_HIGH, CAM22_LOW, VAE21, VAE22, TE, CLIP)
    return write_tiny_models(tmp_path_factory.getbasetemp() / "wan_core_tiny", names=names, overwrite=False)


@pytest.fixture(scope="module")
def pipes(files):
    cache = {}

    def get(model, clip=None, low=None):
        key = (model, clip, low)
        if key not in cache:
            cache[key] = WanPipeline.from_files(
                model=files[model],
                vae=files[VAE21],
                text_encoder=files[TE],
                clip_vision=files[clip] if clip else None,
                model_low=files[low] if low else None,
                device="cpu",
                dtype="fp32",
                text_cache=False,
            )
        return cache[key]

    return get


@pytest.fixture(scope="module")
def vae21(files):
    return wan_core.load_vae(files[VAE21], device="cpu", dtype=torch.float32)


def _video(frames: int, seed: int, size: int = 32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(1, size, size, 3, generator=gen)
    drift = torch.linspace(0, 0.3, frames)[:, None, None, None]
    return (0.6 * base + drift + 0.05 * torch.rand(frames, size, size, 3, generator=gen)).clamp(0, 1)


def _image(seed: int) -> torch.Tensor:
    return torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ 161 frames in context windows


@pytest.mark.slow
def test_161_frame_t2v_run_in_windows_has_161_frames(pipes):
    options = ContextWindows(length=16, overlap=4, schedule="uniform", freenoise=True)
    result = pipes(T2V).generate("a long walk", frames=161, seed=1, context_windows=options, **LONG)
    assert result.frames.shape == (161, 16, 16, 3) and result.latent.shape == (1, 16, 41, 2, 2)
    assert result.params["context_windows"]["length"] == 16  # recorded in the metadata


@pytest.mark.slow
def test_161_frame_i2v_run_in_windows_has_161_frames(pipes):
    options = ContextWindows(length=16, overlap=4, schedule="static", image="every")
    result = pipes(I2V, clip=CLIP).generate(
        "a long walk", image=_image(3), frames=161, seed=2, context_windows=options, **LONG
    )
    assert result.frames.shape == (161, 16, 16, 3)
    assert torch.isfinite(result.latent).all()


# ------------------------------------------------------------------ continuation builders


def test_i2v_continuation_encodes_the_previous_clips_last_frames(vae21):
    previous = _video(13, seed=4)
    cond = continuation_conditioning(vae21, tiny_dit_config("wan2.1-i2v"), previous, 5, 9, 32, 32)
    # independent: the new run's pixel video = last 5 frames of the previous clip, then mid-grey (0 in [-1, 1])
    video = torch.zeros(1, 3, 9, 32, 32)
    video[0, :, :5] = previous[-5:].permute(3, 0, 1, 2) * 2 - 1
    with torch.no_grad():
        expected = vae21.encode(video)
    assert torch.allclose(cond.y[:, 4:], expected, atol=1e-5)
    known = torch.zeros(9, 4, 4)
    known[:5] = 1
    assert torch.equal(cond.y[:, :4], pixel_to_latent_mask(known)[None])
    assert cond.latent_shape == (16, 3, 4, 4)


def test_vace_continuation_keeps_the_previous_frames_under_mask_zero(vae21):
    previous = _video(13, seed=5)
    cond = continuation_conditioning(vae21, tiny_dit_config("wan2.1-vace"), previous, 5, 9, 32, 32)
    context = cond.vace[0].context  # [1, 96, T, h, w] = inactive 16 | reactive 16 | mask 64
    video = torch.zeros(1, 3, 9, 32, 32)
    video[0, :, :5] = previous[-5:].permute(3, 0, 1, 2) * 2 - 1  # kept frames (mask 0): the inactive part
    with torch.no_grad():
        inactive = vae21.encode(video)
    assert torch.allclose(context[:, :16], inactive, atol=1e-5)
    assert float(context[:, 32:, 0].abs().max()) == 0.0 and float(context[:, 32:, -1].min()) == 1.0


def test_ti2v_continuation_locks_the_encoded_frames(files):
    vae22 = wan_core.load_vae(files[VAE22], device="cpu", dtype=torch.float32)
    previous = _video(13, seed=6, size=64)
    cond = continuation_conditioning(vae22, tiny_dit_config("wan2.2-ti2v"), previous, 7, 17, 64, 64)
    with torch.no_grad():  # 7 shared frames -> the first 5 (4n+1) are encoded: 2 latent frames
        expected = vae22.encode(previous[-7:][:5].permute(3, 0, 1, 2)[None] * 2 - 1)
    lock = cond.frame_lock
    assert torch.allclose(lock.latent[:, :, :2], expected, atol=1e-5)
    assert lock.mask.flatten().tolist() == [0, 0, 1, 1, 1]


def test_continuation_refuses_models_without_known_frames(vae21):
    with pytest.raises(ConditioningError, match="cannot continue"):
        continuation_conditioning(vae21, tiny_dit_config("wan2.1-t2v"), _video(9, 1), 5, 17, 32, 32)
    with pytest.raises(InputError, match="overlap_frames"):
        continuation_conditioning(vae21, tiny_dit_config("wan2.1-i2v"), _video(9, 1), 17, 17, 32, 32)


def test_join_keeps_the_previous_clip_and_matches_colours():
    previous = _video(13, seed=7)
    new = (0.5 * _video(9, seed=8) + 0.3).clamp(0, 1)
    new[:5] = (0.6 * previous[-5:] + 0.25).clamp(0, 1)  # the shared frames, duller and brighter
    joined, matched = join_continuation(previous, new, 5, color_match=1.0)
    assert joined.shape == (13 + 9 - 5, 32, 32, 3)
    assert torch.equal(joined[:13], previous)
    assert torch.allclose(matched[:5].reshape(-1, 3).mean(0), previous[-5:].reshape(-1, 3).mean(0), atol=0.02)
    assert torch.allclose(matched[:5].reshape(-1, 3).std(0), previous[-5:].reshape(-1, 3).std(0), atol=0.02)
    plain, unmatched = join_continuation(previous, new, 5, color_match=0.0)
    assert torch.equal(unmatched, new) and torch.equal(plain[13:], new[5:])
    same = match_colors(new, new[:5], new[:5])
    assert torch.allclose(same, new, atol=1e-6)


@pytest.mark.slow
def test_extend_video_with_an_i2v_model_joins_the_clips(pipes):
    previous = _video(13, seed=9)
    result = extend_video(pipes(I2V, clip=CLIP), GenerateParams(prompt="more", frames=9, seed=3, steps=2), previous, 5)
    assert result.frames.shape == (17, 32, 32, 3)
    assert torch.equal(result.frames[:13], previous)
    assert result.params["overlap_frames"] == 5 and result.params["mode"] == "extend (i2v)"


@pytest.mark.slow
def test_cli_extend_writes_the_joined_video(files, tmp_path):
    previous = _video(13, seed=10)
    write_video(previous, tmp_path / "first.mp4", fps=16)
    out = tmp_path / "longer.mp4"
    args = ["-q", "generate", "--model", str(files[VACE]), "--vae", str(files[VAE21])]
    args += ["--text-encoder", str(files[TE]), "--prompt", "go on", "--frames", "9", "--steps", "2"]
    args += ["--extend", str(tmp_path / "first.mp4"), "--overlap-frames", "5", "--out", str(out)]
    assert main(args) == 0
    frames, fps = read_video(out)
    assert frames.shape == (17, 32, 32, 3) and fps == pytest.approx(16)


# ------------------------------------------------------------------ Fun-Camera end to end


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["wan2.1", "wan2.2"])
def test_fun_camera_runs_end_to_end_in_both_layouts(pipes, layout):
    pipe = pipes(CAM21, clip=CLIP) if layout == "wan2.1" else pipes(CAM22_HIGH, low=CAM22_LOW)
    assert pipe.dit.config.variant == f"{layout}-fun-camera"
    camera = preset_trajectory("orbit_left", 9)  # (that the rays change the DiT's output: test_camera.py)
    result = pipe.generate("a room", image=_image(11), camera=camera, frames=9, seed=5, **SMALL)
    assert result.frames.shape == (9, 32, 32, 3) and torch.isfinite(result.latent).all()
    assert result.params["mode"] == "fun-camera"


def test_cli_long_video_and_camera_flags(tmp_path):
    from wan_core.cli import build_parser
    from wan_core.cli_longvideo import camera_trajectory, context_windows

    base = ["generate", "--model", "m", "--vae", "v", "--text-encoder", "t", "--prompt", "p", "--out", "o.mp4"]
    args = build_parser().parse_args(base)
    assert context_windows(args) is None and camera_trajectory(args, 9) is None
    flags = ["--context-length", "21", "--context-overlap", "5", "--context-schedule", "looped", "--freenoise"]
    args = build_parser().parse_args([*base, *flags, "--camera", "orbit_right", "--camera-speed", "0.5"])
    assert context_windows(args) == ContextWindows(length=21, overlap=5, schedule="looped", freenoise=True)
    orbit = camera_trajectory(args, 9)
    assert orbit.frames == 9 and torch.allclose(orbit.c2w, preset_trajectory("orbit_right", 9, 0.5).c2w)
    poses = tmp_path / "poses.txt"
    poses.write_text("0 0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0\n" * 3)
    assert camera_trajectory(build_parser().parse_args([*base, "--camera", str(poses)]), 9).frames == 3
    with pytest.raises(InputError, match="neither a pose file nor a preset"):
        camera_trajectory(build_parser().parse_args([*base, "--camera", "spin"]), 9)
