"""``torchrun --nproc-per-node 2 -m wan_core generate`` on the CPU (gloo) writes the one-process video."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

from wan_core.cli import main
from wan_core.tiny_build import write_tiny_models
from wan_core.video_io import read_video

FILES = (
    "wan2.1_t2v_1.3B_bf16.safetensors",
    "wan_2.1_vae.safetensors",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "wan2.1_t2v_1.3B_example_lora.safetensors",
)


def _generate_args(tiny: dict, out: Path) -> list[str]:
    dit, vae, te, lora = (str(tiny[name]) for name in FILES)
    return [
        "generate", "--model", dit, "--vae", vae, "--text-encoder", te, "--prompt", "a lighthouse",
        "--frames", "5", "--size", "80x48", "--steps", "2", "--cfg", "4", "--seed", "3", "--lora", f"{lora}:0.7",
        "--device", "cpu", "--dtype", "fp32", "--out", str(out),
    ]  # fmt: skip


def test_torchrun_generate_equals_one_process(tmp_path):
    tiny = write_tiny_models(tmp_path / "models", names=FILES)
    assert main(["-q", *_generate_args(tiny, tmp_path / "one.mp4")]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # the repository's parent must not lead sys.path in the children (see test_multigpu_nodes)
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "wan_core"]
    proc = subprocess.run(
        [
            *command,
            *_generate_args(tiny, tmp_path / "two.mp4"),
            "--sp-attention",
            "ring",
            "--no-cfg-split",
            "--shard-weights",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "2 ranks, sequence parallel (ring attention)" in proc.stderr
    assert proc.stdout.strip().splitlines() == [str(tmp_path / "two.mp4")]  # only rank 0 reports (and writes)
    one, _ = read_video(tmp_path / "one.mp4")
    two, _ = read_video(tmp_path / "two.mp4")
    assert one.shape == two.shape == (5, 48, 80, 3)
    assert (one.float() - two.float()).abs().max() <= 1.0  # uint8 frames: at most one rounding step apart
