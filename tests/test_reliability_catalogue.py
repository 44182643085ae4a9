"""The reliability catalogue (issue 14): bad inputs a new user tries, each caught before the work starts.

Every case runs through the CLI (``main``) or the Python API on tiny models and checks four things:
the error type; that the message names the fix; that nothing is left at the output path (a file
already there keeps its bytes, and no temporary file remains beside it); and that the next good
run in the same process succeeds. Behaviours that are not errors (faithful image reading, honest
labels, deterministic mp4, the cache's LRU) are checked in tests/test_reliability_behaviour.py.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from PIL import Image

import wan_core.errors as errors
from wan_core.cli import main
from wan_core.tiny_build import write_tiny_models

T2V, VACE, I2V21 = (
    "wan2.1_t2v_1.3B_bf16.safetensors",
    "wan2.1_vace_1.3B_fp16.safetensors",
    "wan2.1_i2v_480p_14B_bf16.safetensors",
)
I2V_HIGH, TI2V = "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_ti2v_5B_fp16.safetensors"
VAE, VAE22, TE, CLIP, LORA = (
    "wan_2.1_vae.safetensors",
    "wan2.2_vae.safetensors",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "clip_vision_h.safetensors",
    "wan2.1_t2v_1.3B_example_lora.safetensors",
)
SENTINEL = b"a good video that must survive"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    names = (T2V, VACE, I2V21, I2V_HIGH, TI2V, VAE, VAE22, TE, CLIP, LORA)
    return write_tiny_models(tmp_path_factory.getbasetemp() / "wan_core_tiny", names=names, overwrite=False)


@pytest.fixture(scope="module")
def damaged(tiny, tmp_path_factory):
    """Copies of the T2V DiT and the LoRA with one NaN weight each (bit rot, a bad export)."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("damaged")
    out = {}
    for name in (T2V, LORA):
        sd = load_file(str(tiny[name]))
        key = sorted(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 1)[0]
        sd[key] = sd[key].clone()
        sd[key].view(-1)[0] = float("nan")
        out[name] = folder / name
        save_file(sd, str(out[name]))
    return out


@pytest.fixture(autouse=True)
def _private_text_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("WAN_CORE_CACHE", str(tmp_path_factory.getbasetemp() / "reliability_cache"))


@dataclass
class Ctx:
    tiny: dict[str, Path]
    damaged: dict[str, Path]
    folder: Path  # the output folder: holds only existing.mp4 before the case
    existing: Path
    monkeypatch: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def file(self, name: str) -> str:
        return str(self.tiny[name])

    def argv(self, dit: str = T2V, out: Path | str | None = None, **overrides: str | None) -> list[str]:
        """A good `generate` command line (tiny T2V, 16x16, 1 frame, 1 step); ``overrides`` replace or drop flags."""
        flags: dict[str, str | None] = {
            "--model": self.file(dit),
            "--vae": self.file(VAE22 if dit == TI2V else VAE),
            "--text-encoder": self.file(TE),
            "--prompt": "a lighthouse at dusk",
            "--frames": "1",
            "--size": "32x32" if dit == TI2V else "16x16",
            "--steps": "1",
            "--seed": "1",
            "--device": "cpu",
            "--out": str(out if out is not None else self.existing),
        }
        for key, value in overrides.items():
            flags["--" + key.replace("_", "-")] = value
        argv = ["-q", "generate"]
        for flag, value in flags.items():
            if value is not None:
                argv += [flag, *value.split("\0")]  # "\0" joins the values of a repeated/multi-value flag
        return argv


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[Ctx], Any]  # CLI cases return argv; API cases raise
    error: type[BaseException]
    fix: tuple[str, ...]  # the message must name these (case-insensitive)
    exit_code: int = 1


def _png(ctx: Ctx, name: str, size: tuple[int, int], mode: str = "RGB") -> str:
    path = ctx.folder.parent / name
    Image.new(mode, size, 128 if mode != "RGB" else (200, 100, 50)).save(path)
    return str(path)


def _api_pipe(ctx: Ctx) -> Any:
    return ctx.extra["pipe"]


def _nan_image() -> torch.Tensor:
    image = torch.rand(1, 32, 32, 3)
    image[0, 3, 4, 1] = float("nan")
    return image


def _dit_goes_nan_at_step_2(ctx: Ctx) -> None:
    pipe = _api_pipe(ctx)
    forward, calls = pipe.dit.forward, []

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        out = forward(*args, **kwargs)
        return out * float("inf") if len(calls) > 1 else out  # one batched cond+uncond call per step

    ctx.monkeypatch.setattr(pipe.dit, "forward", poisoned)
    pipe.generate("a fox", frames=1, width=16, height=16, steps=3, seed=1).save(ctx.existing)


def _encoder_returns_nan(ctx: Ctx) -> None:
    pipe = _api_pipe(ctx)
    te = pipe.text_encoder
    ctx.monkeypatch.setattr(
        te, "_encode_uncached", lambda texts, host=None: [torch.full((3, 32), float("nan")) for _ in texts]
    )
    pipe.generate("never seen before: a NaN prompt", frames=1, width=16, height=16, steps=1).save(ctx.existing)


def _disk_full_during_encoding(ctx: Ctx) -> None:
    import errno

    from wan_core import video_io

    original, frames_done = video_io._encode_frame, []

    def full(container, stream, frame, index):
        frames_done.append(index)
        if index == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(container, stream, frame, index)

    ctx.monkeypatch.setattr(video_io, "_encode_frame", full)
    video_io.write_video(torch.rand(5, 16, 16, 3), ctx.existing, fps=16)


def _interrupt_during_encoding(ctx: Ctx) -> None:
    from wan_core import video_io

    def stop(container, stream, frame, index):
        raise errors.WanInterrupted("Interrupted by the user; partial results were discarded.")

    ctx.monkeypatch.setattr(video_io, "_encode_frame", stop)
    video_io.write_video(torch.rand(3, 16, 16, 3), ctx.existing, fps=16)


def _bomb_image(ctx: Ctx) -> list[str]:
    """Pillow's decompression-bomb limit, lowered so that a small file trips the same check a huge one does."""
    ctx.monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64)
    path = _png(ctx, "huge.png", (200, 200))
    return ctx.argv(I2V_HIGH, image=path, size=None)


def _truncated_png(ctx: Ctx) -> str:
    good = ctx.folder.parent / "full.png"
    Image.effect_noise((64, 48), 40).convert("RGB").save(good)  # noise: the compressed data is long
    data = good.read_bytes()
    path = ctx.folder.parent / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def _fifo_out(ctx: Ctx) -> list[str]:
    fifo = ctx.folder.parent / "pipe.mp4"
    os.mkfifo(fifo)
    return ctx.argv(out=fifo)


def _cache_env_file(ctx: Ctx) -> list[str]:
    blocker = ctx.folder.parent / "cache_is_a_file"
    blocker.write_text("not a folder")
    ctx.monkeypatch.setenv("WAN_CORE_CACHE", str(blocker))
    return ctx.argv()


CASES: list[Case] = [
    # ---------------------------------------------------------------- NaN / Inf settings and weights
    Case("cli-cfg-nan", lambda c: c.argv(cfg="nan"), errors.NonFiniteError, ("--cfg", "finite")),
    Case("cli-cfg-pair-inf", lambda c: c.argv(cfg="inf,3"), errors.NonFiniteError, ("--cfg", "finite")),
    Case("cli-shift-inf", lambda c: c.argv(shift="inf"), errors.NonFiniteError, ("--shift", "finite")),
    Case("cli-shift-zero", lambda c: c.argv(shift="0"), errors.InputError, ("--shift", "above 0")),
    Case(
        "cli-vace-strength-nan",
        lambda c: c.argv(VACE, vace_strength="nan"),
        errors.NonFiniteError,
        ("--vace-strength", "finite"),
    ),
    Case("cli-lora-strength-nan", lambda c: c.argv(lora=f"{c.file(LORA)}:nan"), errors.NonFiniteError, ("--lora",)),
    Case(
        "cli-lora-low-strength-inf", lambda c: c.argv(lora=f"{c.file(LORA)}:1:inf"), errors.NonFiniteError, ("--lora",)
    ),
    Case(
        "cli-nan-in-checkpoint",
        lambda c: c.argv(model=str(c.damaged[T2V])),
        errors.NonFiniteError,
        ("damaged", "re-download"),
    ),
    Case(
        "cli-nan-in-lora",
        lambda c: c.argv(lora=str(c.damaged[LORA])),
        errors.NonFiniteError,
        ("damaged", "re-download"),
    ),
    Case(
        "api-nan-image",
        lambda c: c.extra["i2v_pipe"].generate("x", image=_nan_image(), frames=1, steps=1),
        errors.NonFiniteError,
        ("image", "nan"),
    ),
    Case(
        "api-image-0-255",
        lambda c: c.extra["i2v_pipe"].generate("x", image=torch.rand(1, 32, 32, 3) * 255, frames=1),
        errors.InputError,
        ("divide by 255",),
    ),
    Case("api-latent-nan-at-step", _dit_goes_nan_at_step_2, errors.NonFiniteError, ("step 2/3", "lora", "cfg")),
    Case("api-embedding-nan-not-cached", _encoder_returns_nan, errors.NonFiniteError, ("nothing was cached", "bf16")),
    Case("api-cfg-nan", lambda c: _api_pipe(c).generate("x", cfg=math.nan), errors.NonFiniteError, ("cfg", "finite")),
    # ---------------------------------------------------------------- output written safely
    Case("api-disk-full-while-encoding", _disk_full_during_encoding, errors.OutputError, ("free disk space",)),
    Case("api-interrupt-while-encoding", _interrupt_during_encoding, errors.WanInterrupted, ("interrupted",)),
    Case("cli-non-utf8-prompt", lambda c: c.argv(prompt="a cat \udcff"), errors.InputError, ("utf-8",)),
    # ---------------------------------------------------------------- checked before the work starts
    Case("cli-out-extension", lambda c: c.argv(out=c.folder / "video.avi"), errors.OutputError, (".mp4", ".webp")),
    Case(
        "cli-out-parent-is-a-file",
        lambda c: c.argv(out=c.existing / "video.mp4"),
        errors.OutputError,
        ("not a folder", "another path"),
    ),
    Case("cli-out-dev-null", lambda c: c.argv(out="/dev/null"), errors.OutputError, (".mp4",)),
    Case("cli-out-is-a-pipe", _fifo_out, errors.OutputError, ("not a regular file",)),
    Case("cli-out-is-a-folder", lambda c: c.argv(out=c.folder / "sub.mp4"), errors.OutputError, ("folder",)),
    Case("cli-fps-zero", lambda c: c.argv(fps="0"), errors.InputError, ("--fps", "at least 0.1")),
    Case("cli-fps-nan", lambda c: c.argv(fps="nan"), errors.NonFiniteError, ("--fps", "finite")),
    Case("cli-fps-inf", lambda c: c.argv(fps="inf"), errors.NonFiniteError, ("--fps", "finite")),
    Case("cli-fps-tiny", lambda c: c.argv(fps="1e-9"), errors.InputError, ("--fps", "at least 0.1")),
    # ---------------------------------------------------------------- inputs the model cannot use
    Case(
        "cli-clip-vision-on-t2v",
        lambda c: c.argv(clip_vision=c.file(CLIP)),
        errors.ConditioningError,
        ("remove --clip-vision",),
    ),
    Case(
        "cli-vace-strength-on-t2v",
        lambda c: c.argv(vace_strength="0.5"),
        errors.ConditioningError,
        ("--vace-strength",),
    ),
    Case("cli-cfg-pair-on-single-model", lambda c: c.argv(cfg="3,4"), errors.InputError, ("one number",)),
    Case(
        "cli-lora-low-on-single-model",
        lambda c: c.argv(lora=f"{c.file(LORA)}:0.8:0.5"),
        errors.InputError,
        ("one strength",),
    ),
    Case(
        "cli-a14b-expert-alone",
        lambda c: c.argv(I2V_HIGH, image=_png(c, "start.png", (48, 32)), size=None),
        errors.InputError,
        ("--model-low",),
    ),
    Case(
        "cli-model-low-on-vace",
        lambda c: c.argv(VACE, model_low=c.file(VACE)),
        errors.InputError,
        ("remove --model-low",),
    ),
    Case("cli-size-beyond-rope", lambda c: c.argv(size="100000x64"), errors.ResourceLimitError, ("1280x720",)),
    Case("cli-frames-beyond-rope", lambda c: c.argv(frames="100001"), errors.ResourceLimitError, ("81 frames",)),
    Case(
        "cli-extreme-aspect-image-no-size",
        lambda c: c.argv(TI2V, image=_png(c, "strip.png", (4000, 16)), size=None),
        errors.InputError,
        ("crop the image", "--size"),
    ),
    Case(
        "cli-one-pixel-image",
        lambda c: c.argv(TI2V, image=_png(c, "dot.png", (1, 1)), size=None),
        errors.InputError,
        ("too small",),
    ),
    Case(
        "cli-image-on-t2v", lambda c: c.argv(image=_png(c, "start.png", (48, 32))), errors.ConditioningError, ("image",)
    ),
    Case(
        "cli-i2v-without-clip-vision",
        lambda c: c.argv(I2V21, image=_png(c, "start.png", (48, 32))),
        errors.InputError,
        ("--clip-vision",),
    ),
    # ---------------------------------------------------------------- typed errors, never tracebacks
    Case("cli-device-cuda-on-cpu-build", lambda c: c.argv(device="cuda"), errors.InputError, ("use cpu",))
    if not torch.cuda.is_available()
    else Case("cli-device-cuda-99", lambda c: c.argv(device="cuda:99"), errors.InputError, ("numbered from 0",)),
    Case("cli-device-unknown", lambda c: c.argv(device="gpu7"), errors.InputError, ("use cpu, cuda",)),
    Case("cli-dtype-unknown", lambda c: c.argv(dtype="fp99"), errors.InputError, ("bf16",)),
    Case("cli-attention-unknown", lambda c: c.argv(attention="warp"), errors.WanError, ("sdpa",)),
    Case(
        "cli-truncated-png",
        lambda c: c.argv(TI2V, image=_truncated_png(c), size=None),
        errors.InputError,
        ("truncated", "re-export"),
    ),
    Case("cli-bomb-png", _bomb_image, errors.InputError, ("downscale",)),
    Case("cli-image-not-an-image", lambda c: c.argv(TI2V, image=c.file(TE)), errors.InputError, ("png or jpeg",)),
    Case("cli-size-abc", lambda c: c.argv(size="abc"), SystemExit, ("832x480",), exit_code=2),
    Case("cli-frames-abc", lambda c: c.argv(frames="many"), SystemExit, ("4n+1",), exit_code=2),
    Case("cli-size-negative", lambda c: [*c.argv(size=None), "--size=-64x64"], errors.InputError, ("at least 1",)),
    Case("cli-cache-env-is-a-file", lambda c: _cache_env_file(c), errors.InputError, ("wan_core_cache", "folder")),
    Case("api-prompt-none", lambda c: _api_pipe(c).generate(None), errors.InputError, ("text",)),
    Case("api-prompt-bytes", lambda c: _api_pipe(c).generate(b"a cat"), errors.InputError, ("text",)),
    Case(
        "api-image-bytes",
        lambda c: c.extra["i2v_pipe"].generate("x", image=b"\x89PNG"),
        errors.InputError,
        ("float tensor",),
    ),
    Case(
        "api-image-wrong-shape",
        lambda c: c.extra["i2v_pipe"].generate("x", image=torch.rand(3, 32, 32)),
        errors.InputError,
        ("channels last",),
    ),
    Case("api-unknown-setting", lambda c: _api_pipe(c).generate("x", guidance_scale=5), errors.InputError, ("known:",)),
    Case(
        "api-guidance-not-options",
        lambda c: _api_pipe(c).generate("x", guidance=5),
        errors.InputError,
        ("GuidanceOptions",),
    ),
    Case("api-frames-string", lambda c: _api_pipe(c).generate("x", frames="5"), errors.InputError, ("whole number",)),
    # ---------------------------------------------------------------- messages that name the right thing
    Case(
        "cli-dit-and-vae-as-shards",
        lambda c: c.argv(model=f"{c.file(T2V)}\0{c.file(VAE)}"),
        errors.CheckpointError,
        ("different models", "vae"),
    ),
    Case(
        "cli-folder-as-model",
        lambda c: c.argv(model=str(c.tiny[VAE].parent)),
        errors.CheckpointError,
        ("model file itself",),
    ),
    Case("cli-dev-null-as-model", lambda c: c.argv(model="/dev/null"), errors.InputError, ("not a regular file",)),
    Case("cli-frames-negative", lambda c: c.argv(frames="-1"), errors.InputError, ("at least 1",)),
    Case("cli-frames-not-4n1", lambda c: c.argv(frames="6"), errors.InputError, ("use 5 or 9",)),
    Case("cli-size-zero", lambda c: c.argv(size="0x64"), errors.InputError, ("at least 1",)),
    Case("cli-size-not-multiple", lambda c: c.argv(size="20x16"), errors.InputError, ("16x16",)),
    Case(
        "cli-missing-tokenizer-path",
        lambda c: c.argv(tokenizer=str(c.folder / "nope" / "spiece.model")),
        errors.InputError,
        ("--tokenizer", "does not exist"),
    ),
]


def _error_line(caplog) -> tuple[str, str]:
    records = [r for r in caplog.records if r.name == "wan_core.cli" and r.levelno >= logging.ERROR]
    assert records, "the CLI logged no error"
    name, _, message = records[-1].getMessage().partition(": ")
    return name, message


def _run_cli(case: Case, ctx: Ctx, caplog, capsys) -> tuple[type, str]:
    """Run a CLI case through main(); return (error type, message) from what the user sees."""
    argv = case.run(ctx)
    if case.exit_code == 2:  # command-line syntax: argparse prints usage and our message, exits 2
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return SystemExit, err
    caplog.clear()
    code = main(argv)
    assert code == case.exit_code, f"exit code {code}: {caplog.text[-2000:]}"
    assert "Traceback" not in capsys.readouterr().err
    name, message = _error_line(caplog)
    return getattr(errors, name), message


@pytest.fixture(scope="module")
def pipes(tiny):
    from wan_core.pipeline import WanPipeline

    def load(model: str, **kwargs: Any) -> Any:
        return WanPipeline.from_files(
            model=tiny[model], vae=tiny[VAE], text_encoder=tiny[TE], device="cpu", dtype="fp32", **kwargs
        )

    return {"pipe": load(T2V), "i2v_pipe": load(I2V21, clip_vision=tiny[CLIP])}


def test_catalogue_has_at_least_40_cases_with_unique_ids():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_caught_and_leaves_nothing_behind(
    case, tiny, damaged, pipes, tmp_path, monkeypatch, caplog, capsys
):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "sub.mp4").mkdir()  # a folder where a file name is expected
    existing = folder / "existing.mp4"
    existing.write_bytes(SENTINEL)
    before = sorted(p.name for p in folder.iterdir())
    ctx = Ctx(tiny, damaged, folder, existing, monkeypatch, extra=dict(pipes))

    with monkeypatch.context() as patch:
        ctx.monkeypatch = patch
        if case.id.startswith("cli-"):
            kind, message = _run_cli(case, ctx, caplog, capsys)
        else:
            with pytest.raises(case.error) as info:
                case.run(ctx)
            kind, message = type(info.value), str(info.value)

    assert issubclass(kind, case.error), (kind, message)
    for words in case.fix:
        assert words.lower() in message.lower(), f"{words!r} not in: {message}"
    assert existing.read_bytes() == SENTINEL, "the file already at the output path was changed"
    assert sorted(p.name for p in folder.iterdir()) == before, "something was left in the output folder"

    # the next good run in the same process succeeds (nothing was left half-done)
    good = folder / "good.mp4"
    caplog.clear()
    if case.id.startswith("cli-"):
        assert main(ctx.argv(out=good)) == 0, caplog.text
    else:
        result = pipes["pipe"].generate("a lighthouse at dusk", frames=1, width=16, height=16, steps=1, seed=2)
        result.save(good)
        assert torch.isfinite(result.frames).all()
    assert good.is_file() and good.stat().st_size > 0


def test_no_case_leaves_temporary_files_in_the_cache(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "reliability_cache"
    partial = [p for p in cache.rglob("*") if ".partial" in p.name] if cache.exists() else []
    assert partial == []
