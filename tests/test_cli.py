"""``python -m wan_core``: selftest (the README's run command), generate, argument parsing."""

import subprocess
import sys
import time

import av
import pytest
from conftest import ROOT

from wan_core.cli import TerminalProgress, main
from wan_core.cli_args import parse_cfg, parse_lora, parse_size
from wan_core.errors import InputError
from wan_core.tiny_build import write_tiny_models
from wan_core.video_io import read_metadata

T2V = "wan2.1_t2v_1.3B_bf16.safetensors"
VACE = "wan2.1_vace_1.3B_fp16.safetensors"
VAE, TE, LORA = (
    "wan_2.1_vae.safetensors",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "wan2.1_t2v_1.3B_example_lora.safetensors",
)


def _probe(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return (
            frames,
            stream.codec_context.name,
            stream.codec_context.pix_fmt,
            (stream.codec_context.width, stream.codec_context.height),
        )


def test_selftest_command_writes_a_playable_mp4(tmp_path):
    """The issue's done-criterion, run exactly as a user would (fresh process, default options + --out)."""
    out = tmp_path / "selftest.mp4"
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "wan_core", "selftest", "--out", str(out), "--frames", "9"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert "selftest OK" in proc.stderr and "9 frames" in proc.stderr
    frames, codec, pix_fmt, size = _probe(out)
    assert (frames, codec, pix_fmt, size) == (9, "h264", "yuv420p", (96, 64))
    meta = read_metadata(out)
    assert meta["frames"] == 9 and meta["mode"] == "t2v" and meta["seed"] == 0 and meta["prompt"]
    print(f"selftest subprocess: {elapsed:.1f} s")
    assert elapsed < 60


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # one folder per session, shared with test_pipeline.py (same seed -> same files; existing ones are kept)
    return write_tiny_models(
        tmp_path_factory.getbasetemp() / "wan_core_tiny", names=(T2V, VACE, VAE, TE, LORA), overwrite=False
    )


def test_generate_command_with_lora_and_metadata(tiny, tmp_path, capsys):
    out = tmp_path / "gen.mp4"
    code = main(
        [
            "-q",
            "generate",
            "--model",
            str(tiny[T2V]),
            "--vae",
            str(tiny[VAE]),
            "--text-encoder",
            str(tiny[TE]),
            "--prompt",
            "a lighthouse",
            "--negative-prompt",
            "blurry",
            "--frames",
            "5",
            "--size",
            "80x48",
            "--steps",
            "2",
            "--cfg",
            "4.5",
            "--shift",
            "3",
            "--solver",
            "euler",
            "--seed",
            "42",
            "--fps",
            "12",
            "--lora",
            f"{tiny[LORA]}:0.7",
            "--device",
            "cpu",
            "--dtype",
            "fp32",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert _probe(out) == (5, "h264", "yuv420p", (80, 48))
    meta = read_metadata(out)
    expected = {
        "prompt": "a lighthouse",
        "negative_prompt": "blurry",
        "frames": 5,
        "width": 80,
        "height": 48,
        "steps": 2,
        "cfg": 4.5,
        "shift": 3.0,
        "solver": "euler",
        "seed": 42,
        "fps": 12.0,
        "model": T2V,
    }
    assert {k: meta[k] for k in expected} == expected
    assert meta["loras"] == [{"file": LORA, "strength": 0.7, "strength_low": None}]


def test_generate_vace_reads_control_video_mask_and_reference_files(tiny, tmp_path):
    import torch
    from PIL import Image

    from wan_core.video_io import write_video

    control = write_video(torch.rand(5, 32, 48, 3), tmp_path / "control.mp4", fps=16)
    mask = torch.zeros(5, 32, 48, 3)
    mask[:, :, 24:] = 1.0  # generate the right half only
    mask_path = write_video(mask, tmp_path / "mask.mp4", fps=16)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "ref.png")
    out = tmp_path / "vace.webp"
    code = main(
        [
            "-q",
            "generate",
            "--model",
            str(tiny[VACE]),
            "--vae",
            str(tiny[VAE]),
            "--text-encoder",
            str(tiny[TE]),
            "--prompt",
            "a dancer",
            "--frames",
            "5",
            "--size",
            "48x32",
            "--steps",
            "2",
            "--control-video",
            str(control),
            "--control-mask",
            str(mask_path),
            "--reference-image",
            str(tmp_path / "ref.png"),
            "--vace-strength",
            "0.8",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    meta = read_metadata(out)
    assert meta["mode"] == "vace" and meta["vace_strength"] == 0.8 and meta["model"] == VACE


def test_generate_errors_exit_with_code_1(tiny, tmp_path, caplog):
    base = [
        "generate",
        "--model",
        str(tiny[T2V]),
        "--vae",
        str(tiny[VAE]),
        "--text-encoder",
        str(tiny[TE]),
        "--prompt",
        "x",
        "--steps",
        "1",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "x.mp4"),
    ]
    assert main([*base, "--size", "64x64", "--frames", "6"]) == 1
    assert "4n+1" in caplog.text
    assert main([*base[:2], str(tiny[VAE]), *base[3:], "--size", "64x64", "--frames", "5"]) == 1
    assert "Wan DiT" in caplog.text
    assert not (tmp_path / "x.mp4").exists()


def test_argument_parsers(tmp_path):
    assert parse_size("832x480") == (832, 480) and parse_size("480*832") == (480, 832)
    with pytest.raises(InputError):
        parse_size("832")
    assert parse_cfg("5") == 5.0 and parse_cfg("3,4") == (3.0, 4.0) and parse_cfg(None) is None
    with pytest.raises(InputError):
        parse_cfg("1,2,3")
    lora = tmp_path / "style.safetensors"
    lora.write_bytes(b"")
    spec = parse_lora(f"{lora}:0.8:0.25")
    assert (spec.path, spec.strength, spec.strength_low) == (str(lora), 0.8, 0.25)
    assert parse_lora(str(lora)).strength == 1.0
    with pytest.raises(InputError, match="does not exist"):
        parse_lora(f"{tmp_path / 'missing.safetensors'}:1")


def test_terminal_progress_one_bar_per_phase():
    progress = TerminalProgress()
    progress(1, 3)
    progress(2, 3)
    first = progress.bar
    assert (first.n, first.total) == (2, 3)
    progress(3, 3)  # the phase is complete: its bar is closed
    assert progress.bar is None
    progress(1, 2)  # the next phase (e.g. VAE chunks) gets its own bar
    assert progress.bar is not first and (progress.bar.n, progress.bar.total) == (1, 2)
    progress(1, 4)  # a different total starts a new bar too
    assert progress.bar.total == 4
    progress.close()
    assert progress.bar is None
    quiet = TerminalProgress(enabled=False)
    quiet(1, 2)
    assert quiet.bar is None


def test_generate_with_a_step_cache_cfg_options_and_custom_sigmas(tiny, tmp_path, caplog):
    """The speed options reach the sampler: MagCache calibration writes its file, the run's report is logged,
    the custom sigma list sets the steps (metadata) and a calibration file is read back as a curve."""
    import json
    import logging

    base = ["generate", "--model", str(tiny[T2V]), "--vae", str(tiny[VAE]), "--text-encoder", str(tiny[TE])]
    base += ["--prompt", "a fox", "--frames", "5", "--size", "32x32", "--device", "cpu", "--dtype", "fp32"]
    calibration = tmp_path / "fox.json"
    out = tmp_path / "a.mp4"
    with caplog.at_level(logging.INFO, logger="wan_core"):
        code = main(
            ["-q", *base, "--cfg", "4", "--cache", f"magcache:calibrate={calibration}", "--out", str(out)]
            + ["--sigmas", "1, 0.9375, 0.833333, 0.625, 0", "--cfg-zero-star", "--zero-init-steps", "1"]
        )
    assert code == 0
    meta = read_metadata(out)
    assert meta["steps"] == 4 and meta["sigmas"] == [1.0, 0.9375, 0.833333, 0.625, 0.0]
    assert meta["cache"]["method"] == "magcache" and meta["guidance"]["zero_init_steps"] == 1
    assert "ZRRR" in caplog.text  # the step report: zero-init step, then the DiT ran
    assert len(json.loads(calibration.read_text())["ratios"]) == 8
    code = main(
        ["-q", *base, "--cfg", "4", "--steps", "3", "--cache", f"magcache:0.5,k=3,curve={calibration}"]
        + ["--cfg-range", "0,0.5", "--out", str(tmp_path / "b.mp4")]
    )
    assert code == 0 and read_metadata(tmp_path / "b.mp4")["cache"]["ratios"][:2] == [1.0, 1.0]
    assert main(["-q", *base, "--cache", "fastcache", "--out", str(tmp_path / "c.mp4")]) == 1
