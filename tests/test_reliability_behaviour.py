"""Issue 14's behaviours that are not errors: faithful images, honest labels, same input same bytes,
the text cache's size limit, atomic files, the guards' primitives, checks before any model loads."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wan_core.atomic import atomic_path, atomic_write_text
from wan_core.errors import InputError, NonFiniteError, OutputError
from wan_core.finite import LatentGuard, all_finite
from wan_core.images import load_image
from wan_core.tiny_build import write_tiny_models
from wan_core.video_io import read_metadata, write_video

T2V, VACE = "wan2.1_t2v_1.3B_bf16.safetensors", "wan2.1_vace_1.3B_fp16.safetensors"
HIGH, LOW = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
VAE, TE = "wan_2.1_vae.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    names = (T2V, VACE, HIGH, LOW, VAE, TE)
    return write_tiny_models(tmp_path_factory.getbasetemp() / "wan_core_tiny", names=names, overwrite=False)


# ------------------------------------------------------------------------------------------- images


def test_16_bit_grayscale_png_keeps_its_values(tmp_path):
    ramp = (np.arange(64 * 16, dtype=np.uint32).reshape(16, 64) * 64).astype(np.uint16)  # 0 .. 65472
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    image = load_image(tmp_path / "g16.png")
    assert image.shape == (1, 16, 64, 3) and image.dtype == torch.float32
    expected = torch.from_numpy(ramp.astype(np.float32) / 65535.0)
    assert torch.allclose(image[0, ..., 0], expected, atol=1e-6)  # was pure white through convert("RGB")
    assert torch.equal(image[0, ..., 0], image[0, ..., 2])


def test_float_tiff_keeps_its_values(tmp_path):
    values = np.linspace(0.0, 1.0, 32 * 16, dtype=np.float32).reshape(16, 32)
    Image.fromarray(values, mode="F").save(tmp_path / "f.tiff")
    image = load_image(tmp_path / "f.tiff")
    assert torch.allclose(image[0, ..., 1], torch.from_numpy(values), atol=1e-7)  # was black


def test_32_bit_integer_image_holding_16_bit_values(tmp_path):
    values = (np.arange(16 * 16, dtype=np.int32).reshape(16, 16) * 250).astype(np.int32)
    Image.fromarray(values, mode="I").save(tmp_path / "i.tiff")
    image = load_image(tmp_path / "i.tiff")
    assert torch.allclose(image[0, ..., 0], torch.from_numpy(values / 65535.0).float(), atol=1e-6)


def test_palette_and_alpha_images_keep_their_colours(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (10, 200, 30, 0))  # fully transparent: the stored colour stays
    rgba.save(tmp_path / "a.png")
    rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    Image.new("LA", (8, 8), (77, 255)).save(tmp_path / "la.png")
    for name, rgb in (("a.png", (10, 200, 30)), ("p.png", (10, 200, 30)), ("la.png", (77, 77, 77))):
        pixel = load_image(tmp_path / name)[0, 0, 0]
        assert torch.allclose(pixel, torch.tensor(rgb) / 255.0, atol=1 / 255), (name, pixel)


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "r.jpg").shape == (1, 40, 20, 3)


def test_two_vace_reference_images_of_different_sizes(tiny, tmp_path, monkeypatch):
    from wan_core.cli import main

    monkeypatch.setenv("WAN_CORE_CACHE", str(tmp_path / "cache"))
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (24, 56), (30, 30, 200)).save(tmp_path / "b.png")
    argv = ["-q", "generate", "--model", str(tiny[VACE]), "--vae", str(tiny[VAE]), "--text-encoder", str(tiny[TE])]
    argv += ["--prompt", "x", "--frames", "1", "--size", "16x16", "--steps", "1", "--out", str(tmp_path / "v.mp4")]
    argv += ["--reference-image", str(tmp_path / "a.png"), "--reference-image", str(tmp_path / "b.png")]
    assert main(argv) == 0  # crashed in torch.cat before
    assert read_metadata(tmp_path / "v.mp4")["mode"] == "vace"


# ------------------------------------------------------------------------------------------- labels


def test_a14b_pair_and_single_model_are_labelled_honestly(tiny, tmp_path, caplog):
    from wan_core.pipeline import WanPipeline

    common = {"vae": tiny[VAE], "text_encoder": tiny[TE], "device": "cpu", "dtype": "fp32", "text_cache": False}
    pair = WanPipeline.from_files(model=tiny[HIGH], model_low=tiny[LOW], **common)
    meta = pair.generate("x", frames=1, width=16, height=16, steps=2, seed=1).params
    assert meta["variant"].startswith("wan2.2-t2v") and meta["experts"] == "high+low"  # was wan2.1-t2v
    with caplog.at_level(logging.INFO, logger="wan_core.pipeline"):
        single = WanPipeline.from_files(model=tiny[HIGH], **common)
    assert "same tensors as one expert of Wan2.2 T2V-A14B" in caplog.text  # the ambiguity is said, not hidden
    meta = single.generate("x", frames=1, width=16, height=16, steps=1, seed=1).params
    assert meta["variant"].startswith("wan2.1-t2v") and meta["experts"] == "single"


# ------------------------------------------------------------------------------------------- same bytes


def test_same_frames_give_the_same_mp4_bytes_whatever_the_cpu_affinity(tmp_path):
    """x264's automatic thread count follows the CPUs the calling thread may use, and its output follows the
    thread count: the cause of different bytes between runs / between two Save Video nodes. Fixed now."""
    frames = torch.rand(9, 64, 96, 3, generator=torch.Generator().manual_seed(0))
    meta = {"prompt": "x", "seed": 1}
    first = write_video(frames, tmp_path / "a.mp4", metadata=meta).read_bytes()
    assert write_video(frames, tmp_path / "b.mp4", metadata=meta).read_bytes() == first
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1:
        cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cpus)})
        try:
            pinned = write_video(frames, tmp_path / "c.mp4", metadata=meta).read_bytes()
        finally:
            os.sched_setaffinity(0, cpus)
        assert pinned == first
    else:
        print("one CPU only: the affinity half of the check cannot run here")


def test_metadata_is_strict_json_even_with_nan(tmp_path):
    path = write_video(torch.rand(1, 16, 16, 3), tmp_path / "m.mp4", metadata={"cfg": float("nan"), "p": "é"})
    with open(path, "rb") as f:
        assert b"NaN" not in f.read()
    assert read_metadata(path) == {"cfg": "nan", "p": "é"}


def test_nan_frames_are_refused_not_written_black(tmp_path):
    frames = torch.rand(2, 16, 16, 3)
    frames[1, 2, 3, 0] = float("nan")
    with pytest.raises(NonFiniteError):
        write_video(frames, tmp_path / "n.mp4")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- atomic files


def test_atomic_path_keeps_the_old_file_on_failure_and_replaces_it_on_success(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("failed mid-write")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # the permissions open() would give


def test_write_video_refuses_bad_paths_before_encoding(tmp_path):
    with pytest.raises(OutputError, match="mp4"):
        write_video(torch.rand(1, 16, 16, 3), tmp_path / "x.gif")
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(OutputError, match="folder"):
        write_video(torch.rand(1, 16, 16, 3), tmp_path / "dir.mp4")
    with pytest.raises(InputError, match="fps"):
        write_video(torch.rand(1, 16, 16, 3), tmp_path / "f.mp4", fps=float("nan"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.mp4"]


# ------------------------------------------------------------------------------------------- text cache


def _embedding(seed: int, tokens: int = 64) -> torch.Tensor:
    return torch.randn(tokens, 16, generator=torch.Generator().manual_seed(seed))


def test_text_cache_folder_is_a_size_limited_lru(tmp_path):
    from wan_core.text.cache import EmbeddingCache

    one = 64 * 16 * 4  # bytes of one embedding's data
    limit = int(3.5 * (one + 200))
    cache = EmbeddingCache(tmp_path, max_bytes=limit)
    keys = [f"{i:02x}" * 32 for i in range(5)]
    for i, key in enumerate(keys[:3]):
        cache.put(key, _embedding(i))
        os.utime(cache._path(tmp_path, key), (1000 + i, 1000 + i))  # distinct ages, oldest first
    cache = EmbeddingCache(tmp_path, max_bytes=limit)  # a later process: empty memory, the same folder
    assert cache.get(keys[0]) is not None  # a hit makes the oldest file the newest
    cache.put(keys[3], _embedding(3))
    on_disk = {p.stem for p in tmp_path.rglob("*.safetensors")}
    assert on_disk == {keys[0], keys[2], keys[3]}, "the least recently used file (keys[1]) should have gone"
    assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]


def test_text_cache_limit_comes_from_the_environment(tmp_path, monkeypatch):
    from wan_core.text.cache import DEFAULT_LIMIT_MB, EmbeddingCache, default_limit_bytes

    assert default_limit_bytes() == DEFAULT_LIMIT_MB * 2**20
    monkeypatch.setenv("WAN_CORE_TEXT_CACHE_MB", "0")
    cache = EmbeddingCache(tmp_path)
    cache.put("ab" * 32, _embedding(0))
    assert list(tmp_path.rglob("*.safetensors")) == []  # 0 = memory only
    monkeypatch.setenv("WAN_CORE_TEXT_CACHE_MB", "lots")
    with pytest.raises(InputError, match="WAN_CORE_TEXT_CACHE_MB"):
        default_limit_bytes()


def test_text_cache_never_stores_nan_and_heals_a_poisoned_file(tmp_path, caplog):
    from safetensors.torch import save_file

    from wan_core.text.cache import EmbeddingCache

    cache, key = EmbeddingCache(tmp_path), "cd" * 32
    with pytest.raises(NonFiniteError, match="nothing was cached"):
        cache.put(key, torch.full((3, 16), float("nan")))
    assert cache.get(key) is None and list(tmp_path.rglob("*.safetensors")) == []
    poisoned = cache._path(tmp_path, key)
    poisoned.parent.mkdir(parents=True)
    save_file({"embedding": torch.full((3, 16), float("inf"))}, str(poisoned))  # an old cache, or bit rot
    with caplog.at_level(logging.WARNING):
        assert EmbeddingCache(tmp_path).get(key) is None  # a miss: the prompt is encoded again
    assert not poisoned.exists() and "NaN/Inf" in caplog.text


def test_text_cache_write_failure_leaves_no_file(tmp_path, monkeypatch):
    import safetensors.torch

    from wan_core.text.cache import EmbeddingCache

    def broken(tensors, path, metadata=None):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    cache = EmbeddingCache(tmp_path)
    value = cache.put("ef" * 32, _embedding(1))  # still returned (and kept in memory)
    assert torch.equal(value, _embedding(1)) and [p for p in tmp_path.rglob("*") if p.is_file()] == []


# ------------------------------------------------------------------------------------------- guard primitives


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float8_e4m3fn, torch.float8_e5m2]
)
def test_all_finite_sees_nan_and_inf_in_every_weight_dtype(dtype):
    x = torch.randn(64, 64).to(dtype)
    assert all_finite(x)
    bad = x.clone()
    bad.view(-1)[17] = float("nan")
    assert not all_finite(bad)
    if dtype != torch.float8_e4m3fn:  # e4m3fn has no Inf (it saturates to NaN)
        bad = x.clone()
        bad.view(-1)[5] = float("-inf")
        assert not all_finite(bad)
    big = torch.full((4, 4), 60000.0, dtype=torch.float16)
    assert all_finite(big)  # a float16 sum would overflow: the check must not call that NaN


def test_latent_guard_names_step_and_expert():
    high, low = object(), object()
    guard = LatentGuard.for_plan([(high, 4.0), (high, 4.0), (low, 3.0)])
    guard.check(torch.zeros(2, 2), 1, 4.0, high)
    with pytest.raises(NonFiniteError, match=r"step 3/3 \(low-noise expert\).*cfg 3"):
        guard.check(torch.tensor([0.0, float("nan")]), 3, 3.0, low)


def test_sampler_settings_and_experts_refuse_nan_as_the_nodes_pass_it():
    from wan_core.sampling import Experts, SamplerSettings

    with pytest.raises(NonFiniteError, match="cfg"):
        SamplerSettings(cfg=float("nan"))
    with pytest.raises(NonFiniteError, match="shift"):
        SamplerSettings(shift=float("inf"))
    with pytest.raises(NonFiniteError, match="cfg"):  # per-expert guidance: the (low, high) cfg pair
        SamplerSettings(cfg=(3.0, float("nan")))
    with pytest.raises(NonFiniteError, match="boundary"):
        Experts(high=object(), low=object(), boundary=float("nan"))


def test_camera_input_is_checked_like_the_pixel_inputs():
    """A Fun-Camera trajectory passes the input check; NaN poses and a non-trajectory are refused by name."""
    import dataclasses

    from wan_core.conditioning import preset_trajectory
    from wan_core.pipeline import GenerateInputs
    from wan_core.request_checks import check_inputs
    from wan_core.validation import CLI_NAMES

    orbit = preset_trajectory("orbit_left", 5)
    assert check_inputs(GenerateInputs(camera=orbit)).camera is orbit
    broken = dataclasses.replace(orbit, c2w=orbit.c2w.clone().fill_(float("nan")))
    with pytest.raises(NonFiniteError, match="--camera"):
        check_inputs(GenerateInputs(camera=broken), CLI_NAMES)
    with pytest.raises(InputError, match="CameraTrajectory.*got str"):
        check_inputs(GenerateInputs(camera="orbit_left"))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- before loading


def test_late_checks_now_fail_before_any_model_loads(tiny, tmp_path, monkeypatch, caplog):
    """Output extension and folder, fps, size: all refused without loading a single model."""
    from wan_core import pipeline
    from wan_core.cli import main

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was reported")

    monkeypatch.setattr(pipeline.WanPipeline, "from_files", no_loading)
    monkeypatch.setattr("wan_core.dit.loader.load_dit", no_loading)
    base = ["-q", "generate", "--model", str(tiny[T2V]), "--vae", str(tiny[VAE]), "--text-encoder", str(tiny[TE])]
    base += ["--prompt", "x", "--frames", "1", "--size", "16x16", "--steps", "1"]
    (tmp_path / "file").write_text("x")
    for extra in (
        ["--out", str(tmp_path / "v.mkv")],
        ["--out", str(tmp_path / "file" / "v.mp4")],
        ["--out", str(tmp_path / "v.mp4"), "--fps", "0"],
        ["--out", str(tmp_path / "v.mp4"), "--fps", "nan"],
        ["--out", str(tmp_path / "v.mp4"), "--size", "100000x64"],
    ):
        caplog.clear()
        assert main([*base, *extra]) == 1, extra
        assert "ERROR" in caplog.text or caplog.records
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == '["file"]'


def test_sampler_node_refuses_latents_beyond_the_rotary_table_or_memory():
    from wan_core.dit.config import released_config
    from wan_core.errors import ResourceLimitError
    from wan_core.model_fit import check_latent_limits

    config = released_config("wan2.1-t2v-1.3b")
    check_latent_limits(config, (16, 21, 60, 104), torch.device("cpu"))  # 832x480, 81 frames: fine
    with pytest.raises(ResourceLimitError, match="rotary"):
        check_latent_limits(config, (16, 1, 8, 4096), torch.device("cpu"))
    with pytest.raises(ResourceLimitError, match="GiB"):  # 4096x4096, 1025 frames (the widgets' maxima)
        check_latent_limits(config, (16, 257, 512, 512), torch.device("cpu"))


def test_cli_messages_name_flags_not_api_parameters():
    from wan_core.cli import cli_message

    text = "pass clip_vision (e.g. clip_vision_h.safetensors in models/clip_vision/) or tokenizer=spiece.model"
    assert cli_message(text) == (
        "pass --clip-vision (e.g. clip_vision_h.safetensors in models/clip_vision/) or --tokenizer spiece.model"
    )
    assert cli_message("reference_images and last_image") == "--reference-image and --last-image"


def test_numpy_inputs_are_accepted_as_tensors(tiny):
    from wan_core.validation import check_pixels

    array = np.random.default_rng(0).random((1, 24, 32, 3), dtype=np.float32)
    assert torch.equal(check_pixels(array, "image"), torch.from_numpy(array))
    assert check_pixels(array[0], "image").shape == (1, 24, 32, 3)  # the batch dimension is added
