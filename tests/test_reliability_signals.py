"""SIGINT and SIGTERM during sampling and during encoding: the CLI exits 130 / 143 and leaves no file.

Each case runs ``python -m wan_core generate`` on tiny models in a subprocess. A small wrapper slows the
phase under test (a sleep per sampling step, or per encoded frame) and prints a marker when it is
inside it, so the signal lands there deterministically; the real sampler and the real encoder run.
Half the cases write over a file already at --out, which must keep its bytes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import ROOT

from wan_core.tiny_build import write_tiny_models

T2V, VAE, TE = (
    "wan2.1_t2v_1.3B_bf16.safetensors",
    "wan_2.1_vae.safetensors",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
)
SENTINEL = b"the video from yesterday"

# Runs the CLI with the phase under test slowed down; prints PHASE-STARTED once inside it.
DRIVER = textwrap.dedent(
    """
    import sys, time
    phase, argv = sys.argv[1], sys.argv[2:]
    def announce_and_slow(original):
        calls = []
        def wrapped(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                print("PHASE-STARTED", flush=True)
            time.sleep(0.2)
            return original(*args, **kwargs)
        return wrapped
    if phase == "sampling":
        from wan_core import finite
        finite.LatentGuard.check = announce_and_slow(finite.LatentGuard.check)
    else:
        from wan_core import video_io
        video_io._encode_frame = announce_and_slow(video_io._encode_frame)
    from wan_core.cli import main
    sys.exit(main(argv))
    """
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.getbasetemp() / "wan_core_tiny", names=(T2V, VAE, TE), overwrite=False)


@pytest.mark.parametrize(
    ("phase", "signum", "code", "existing"),
    [
        ("sampling", signal.SIGINT, 130, False),
        ("sampling", signal.SIGTERM, 143, True),
        ("encoding", signal.SIGINT, 130, True),
        ("encoding", signal.SIGTERM, 143, False),
    ],
    ids=["sampling-SIGINT", "sampling-SIGTERM", "encoding-SIGINT", "encoding-SIGTERM"],
)
def test_signal_leaves_no_file(phase, signum, code, existing, tiny, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "video.mp4"
    if existing:
        out.write_bytes(SENTINEL)
    steps, frames = ("40", "1") if phase == "sampling" else ("1", "33")
    argv = ["generate", "--model", str(tiny[T2V]), "--vae", str(tiny[VAE]), "--text-encoder", str(tiny[TE])]
    argv += ["--prompt", "a lighthouse", "--size", "16x16", "--frames", frames, "--steps", steps, "--out", str(out)]
    env = {"WAN_CORE_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, phase, *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 240
        line = ""
        while "PHASE-STARTED" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, f"the run ended before {phase}: {proc.stderr.read()[-2000:]}"
            assert time.time() < deadline, f"{phase} never started"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert "nothing was written" in err
    if existing:
        assert out.read_bytes() == SENTINEL, "the file already at --out was changed"
    else:
        assert not out.exists(), "a file was left at --out"
    assert sorted(p.name for p in out_dir.iterdir()) == (["video.mp4"] if existing else []), "a temporary file remains"
