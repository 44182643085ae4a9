"""The ComfyUI benchmark's smoke run: ComfyUI's native Wan DiT/VAE and ours on the same tiny weights (CPU)."""

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

COMFY = os.environ.get("COMFYUI_PATH")
PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)


@pytest.mark.skipif(not COMFY, reason="COMFYUI_PATH is not set (a ComfyUI checkout is needed for the native peer)")
def test_bench_comfy_smoke_agrees_with_native():
    run = subprocess.run(
        [PYTHON, "benchmarks/bench_comfy.py", "--smoke", "--comfyui", COMFY, "--diffusers", ""],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = re.findall(r"^\| (DiT|VAE)[^|]*\|[^|]*\|[^|]*\|[^|]*\| ([0-9.e+-]+) \|", run.stdout, re.M)
    assert [kind for kind, _ in rows] == ["DiT", "VAE", "VAE"], run.stdout
    assert all(float(err) < 5e-2 for _, err in rows), run.stdout  # bf16 on both sides
    assert "Sampler node" in run.stdout
