"""Standalone pipeline end to end on tiny random-weight models (CPU, fp32, 5 frames, 2 steps)."""

import json

import pytest
import torch
from conftest import rel_err

from wan_core.errors import ConditioningError, InputError
from wan_core.pipeline import GenerateParams, WanPipeline
from wan_core.tiny_build import write_tiny_models
from wan_core.video_io import read_metadata, read_video

T2V = "wan2.1_t2v_1.3B_bf16.safetensors"
I2V = "wan2.1_i2v_480p_14B_bf16.safetensors"
FLF2V = "wan2.1_flf2v_720p_14B_fp16.safetensors"
VACE = "wan2.1_vace_1.3B_fp16.safetensors"
FUN_CONTROL = "wan2.1_fun_control_1.3B_bf16.safetensors"
TI2V = "wan2.2_ti2v_5B_fp16.safetensors"
A14B_HIGH = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"
A14B_LOW = "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
I2V_HIGH = "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
I2V_LOW = "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"
VAE21, VAE22 = "wan_2.1_vae.safetensors", "wan2.2_vae.safetensors"
TE, CLIP, LORA = (
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "clip_vision_h.safetensors",
    "wan2.1_t2v_1.3B_example_lora.safetensors",
)
SMALL = {"frames": 5, "width": 32, "height": 32, "steps": 2}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    names = (
        T2V,
        I2V,
        FLF2V,
        VACE,
        FUN_CONTROL,
        TI2V,
        A14B_HIGH,
        A14B_LOW,
        I2V_HIGH,
        I2V_LOW,
        VAE21,
        VAE22,
        TE,
        CLIP,
        LORA,
    )
    # one folder per session, shared with test_cli.py (same seed -> same files; existing ones are kept)
    return write_tiny_models(tmp_path_factory.getbasetemp() / "wan_core_tiny", names=names, overwrite=False)


@pytest.fixture(scope="module")
def pipes(files):
    cache = {}

    def get(model, vae=VAE21, clip=None, low=None, fresh=False):
        key = (model, vae, clip, low)
        if fresh or key not in cache:
            pipe = WanPipeline.from_files(
                model=files[model],
                vae=files[vae],
                text_encoder=files[TE],
                clip_vision=files[clip] if clip else None,
                model_low=files[low] if low else None,
                device="cpu",
                dtype="fp32",
                text_cache=False,
            )
            if fresh:
                return pipe
            cache[key] = pipe
        return cache[key]

    return get


def _image(seed, height=48, width=80):
    return torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(seed))


def _check_video(result, frames=5, size=32):
    assert result.frames.shape == (frames, size, size, 3)
    assert result.frames.dtype == torch.float32
    assert 0.0 <= float(result.frames.min()) and float(result.frames.max()) <= 1.0
    assert torch.isfinite(result.latent).all()


def test_t2v_same_seed_same_video_other_seed_other_video(pipes):
    pipe = pipes(T2V)
    a = pipe.generate("a red fox in the snow", seed=3, **SMALL)
    b = pipe.generate("a red fox in the snow", seed=3, **SMALL)
    c = pipe.generate("a red fox in the snow", seed=4, **SMALL)
    _check_video(a)
    assert a.latent.shape == (1, 16, 2, 4, 4)
    assert torch.equal(a.latent, b.latent) and torch.equal(a.frames, b.frames)
    assert not torch.allclose(a.latent, c.latent)


def test_t2v_equals_the_components_called_by_hand(pipes):
    """The pipeline's wiring (default negative prompt, settings, conditioning, decode) vs direct calls."""
    from wan_core.conditioning import t2v_conditioning
    from wan_core.configs import default_negative_prompt, defaults_for
    from wan_core.sampling import SamplerSettings, sample

    pipe = pipes(T2V)
    result = pipe.generate("a boat on a lake", seed=11, **SMALL)
    cfg = pipe.dit.config
    base = defaults_for(cfg.family, cfg.task, cfg.size_label)
    pos, neg = pipe.text_encoder.encode(["a boat on a lake", default_negative_prompt(cfg.family, cfg.task)])
    cond = t2v_conditioning(16, 5, 32, 32, 8)
    settings = SamplerSettings(steps=2, shift=base.shift, cfg=base.cfg, solver=base.solver, seed=11)
    with torch.no_grad():
        latent = sample(pipe.dit, [pos], [neg], cond, settings, device="cpu")
        video = pipe.vae.decode(latent)
    assert torch.equal(result.latent, latent.cpu())
    expected = ((video[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 3, 0)
    assert torch.allclose(result.frames, expected, atol=1e-6)


def test_unset_parameters_take_the_task_defaults_and_are_saved(pipes, tmp_path):
    from wan_core.configs import default_negative_prompt, defaults_for

    pipe = pipes(T2V)
    result = pipe.generate(GenerateParams(prompt="x", frames=5, width=32, height=32, steps=1))
    cfg = pipe.dit.config
    base = defaults_for(cfg.family, cfg.task, cfg.size_label)
    params = result.params
    assert (params["shift"], params["cfg"], params["solver"], params["fps"]) == (
        base.shift,
        base.cfg,
        base.solver,
        base.fps,
    )
    assert params["negative_prompt"] == default_negative_prompt(cfg.family, cfg.task)
    assert isinstance(params["seed"], int) and params["mode"] == "t2v" and params["model"] == T2V
    path = result.save(tmp_path / "out.mp4")
    frames, fps = read_video(path)
    assert frames.shape == (5, 32, 32, 3) and fps == pytest.approx(result.fps)
    assert read_metadata(path) == json.loads(json.dumps(params, default=str))


def test_i2v_uses_the_image_and_clip(pipes):
    pipe = pipes(I2V, clip=CLIP)
    a = pipe.generate("a cat", image=_image(1), seed=2, **SMALL)
    b = pipe.generate("a cat", image=_image(2), seed=2, **SMALL)
    _check_video(a)
    assert a.params["mode"] == "i2v"
    assert not torch.allclose(a.latent, b.latent)
    with pytest.raises(InputError, match="start image"):
        pipe.generate("a cat", seed=2, **SMALL)


def test_i2v_without_clip_model_is_a_clear_error(pipes):
    with pytest.raises(InputError, match="clip_vision"):
        pipes(I2V).generate("a cat", image=_image(1), seed=2, **SMALL)


def test_flf2v_first_and_last_frame(pipes):
    pipe = pipes(FLF2V, clip=CLIP)
    a = pipe.generate("morph", image=_image(1), last_image=_image(3), seed=2, **SMALL)
    b = pipe.generate("morph", image=_image(1), last_image=_image(4), seed=2, **SMALL)
    _check_video(a)
    assert a.params["mode"] == "flf2v" and not torch.allclose(a.latent, b.latent)


def test_ti2v_keeps_the_encoded_first_frame(pipes):
    from wan_core.conditioning import ti2v_conditioning

    pipe = pipes(TI2V, vae=VAE22)
    image = _image(5)
    result = pipe.generate("a dog", image=image, seed=1, **SMALL)
    _check_video(result)
    assert result.latent.shape == (1, 48, 2, 2, 2) and result.params["mode"] == "ti2v"
    with torch.no_grad():
        lock = ti2v_conditioning(pipe.vae, image, 5, 32, 32).frame_lock
    assert torch.allclose(result.latent[:, :, :1], lock.latent[:, :, :1].cpu(), atol=1e-5)
    _check_video(pipe.generate("a dog", seed=1, **SMALL))  # text-only TI2V


def test_vace_with_control_video_and_reference_trims_the_reference(pipes):
    pipe = pipes(VACE)
    control = torch.rand(5, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    a = pipe.generate("dance", control_video=control, reference_images=_image(7, 32, 32), seed=3, **SMALL)
    b = pipe.generate("dance", control_video=control.flip(0), reference_images=_image(7, 32, 32), seed=3, **SMALL)
    _check_video(a)
    assert a.latent.shape[2] == 2 and a.params["mode"] == "vace"
    assert not torch.allclose(a.latent, b.latent)


def test_fun_control(pipes):
    pipe = pipes(FUN_CONTROL, clip=CLIP)
    control = torch.rand(5, 32, 32, 3, generator=torch.Generator().manual_seed(1))
    result = pipe.generate("pose", control_video=control, image=_image(2), seed=1, **SMALL)
    _check_video(result)
    assert result.params["mode"] == "fun-control"


def test_a14b_runs_both_experts(pipes):
    two = pipes(A14B_HIGH, low=A14B_LOW)
    same = pipes(A14B_HIGH, low=A14B_HIGH)
    # shift 5, 3 steps: t = 999, 909, 714 -> the official T2V boundary 875 switches before the last step
    params = dict(SMALL, steps=3, shift=5.0, cfg=(3.0, 4.0), seed=9)
    a = two.generate("a city at night", **params)
    b = same.generate("a city at night", **params)
    _check_video(a)
    assert a.params["model_low"] == A14B_LOW and a.params["cfg"] == (3.0, 4.0)
    assert not torch.allclose(a.latent, b.latent), "the low-noise expert was never used"


def test_a14b_i2v_needs_no_clip_and_takes_a_last_frame(pipes):
    pipe = pipes(I2V_HIGH, low=I2V_LOW)
    result = pipe.generate("waves", image=_image(3), seed=4, **SMALL)
    _check_video(result)
    assert result.params["mode"] == "i2v" and result.params["cfg"] == (3.5, 3.5)
    both = pipe.generate("waves", image=_image(3), last_image=_image(8), seed=4, **SMALL)
    assert both.params["mode"] == "flf2v" and not torch.allclose(result.latent, both.latent)


def test_lora_changes_the_video(pipes, files):
    from wan_core.lora import LoraSpec

    plain = pipes(T2V).generate("lora", seed=1, **SMALL)
    pipe = pipes(T2V, fresh=True)
    pipe.add_loras([LoraSpec(path=str(files[LORA]), strength=1.0)])
    styled = pipe.generate("lora", seed=1, **SMALL)
    assert not torch.allclose(plain.latent, styled.latent)
    assert styled.params["loras"] == [{"file": LORA, "strength": 1.0, "strength_low": None}]
    pipe.remove_loras()
    restored = pipe.generate("lora", seed=1, **SMALL)
    assert restored.params["loras"] == [] and rel_err(restored.latent, plain.latent) < 1e-5


def test_inputs_that_do_not_fit_raise_clear_errors(pipes):
    pipe = pipes(T2V)
    with pytest.raises(ConditioningError, match="image"):
        pipe.generate("x", image=_image(0), **SMALL)
    with pytest.raises(InputError, match="multiple of 16"):
        pipe.generate("x", **dict(SMALL, width=40))
    with pytest.raises(InputError, match="4n\\+1"):
        pipe.generate("x", **dict(SMALL, frames=6))
    with pytest.raises(ConditioningError, match="wan2.2_vae"):
        pipes(TI2V, vae=VAE21)


def _fake_config(family, task, size_label=None):
    from types import SimpleNamespace

    return SimpleNamespace(family=family, task=task, size_label=size_label, variant=f"{family}-{task}")


def test_resolve_params_follows_the_official_defaults():
    """Spec 7.5 values, written out here (not read from wan_core.configs) so a wrong table fails."""
    from types import SimpleNamespace

    from wan_core.request import GenerateInputs, resolve_params

    vae21, vae22 = SimpleNamespace(spatial_stride=8), SimpleNamespace(spatial_stride=16)
    none = GenerateInputs()
    r = resolve_params(_fake_config("wan2.1", "t2v", "1.3b"), vae21, GenerateParams("x", seed=1), none, "t2v")
    assert (r.width, r.height, r.frames, r.steps, r.shift, r.cfg, r.fps) == (
        832,
        480,
        81,
        50,
        5.0,
        5.0,
        16,
    )
    assert r.negative_prompt.startswith("色调艳丽，过曝")
    i2v = _fake_config("wan2.1", "i2v", "14b")
    r = resolve_params(i2v, vae21, GenerateParams("x", width=832, height=480), GenerateInputs(image=_image(0)), "i2v")
    assert (r.steps, r.shift) == (40, 3.0) and r.negative_prompt.startswith("镜头晃动，")
    # no size: the official max-area rule at the image's aspect (1280*720 area, 3:5 image)
    r = resolve_params(i2v, vae21, GenerateParams("x"), GenerateInputs(image=_image(0, 600, 1000)), "i2v")
    assert (r.width, r.height, r.shift) == (1232, 736, 5.0)
    a14b = _fake_config("wan2.1", "t2v", "14b")  # A14B T2V experts are detected as Wan2.1 T2V-14B
    r = resolve_params(a14b, vae21, GenerateParams("x"), none, "t2v", family="wan2.2")
    assert (r.steps, r.shift, r.cfg) == (40, 12.0, (3.0, 4.0))
    r = resolve_params(_fake_config("wan2.2", "ti2v", "5b"), vae22, GenerateParams("x"), none, "ti2v")
    assert (r.width, r.height, r.frames, r.fps, r.steps) == (1280, 704, 121, 24, 50)
    r = resolve_params(
        _fake_config("wan2.1", "flf2v", "14b"), vae21, GenerateParams("x", width=64, height=64, frames=5), none, "flf2v"
    )
    assert r.shift == 16.0 and r.negative_prompt.startswith("镜头切换，镜头晃动，")


def test_offload_gives_the_same_video_and_releases_the_text_encoder(files, pipes):
    offloaded = WanPipeline.from_files(
        model=files[T2V],
        vae=files[VAE21],
        text_encoder=files[TE],
        device="cpu",
        dtype="fp32",
        offload=True,
        text_cache=False,
    )
    a = offloaded.generate("offload", seed=6, **SMALL)
    assert not offloaded.text_encoder.loaded and offloaded.text_encoder.load_count == 1
    b = pipes(T2V).generate("offload", seed=6, **SMALL)
    # two separately loaded copies of the weights: fp32 GEMMs may round differently (alignment), not bitwise
    assert a.params == b.params
    assert rel_err(a.latent, b.latent) < 1e-5 and rel_err(a.frames, b.frames) < 1e-5
