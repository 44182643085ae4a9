"""The multi-GPU Model Loader inside a real ComfyUI (CPU, gloo): benchmarks/bench_multigpu_comfyui.py --smoke.

ComfyUI spawns the worker from its own process (whose __main__ is ComfyUI's main.py), the
sampled latent equals the one-process latent, and ComfyUI's /free stops the worker. Runs
only with COMFYUI_PATH (and COMFYUI_PYTHON for ComfyUI's interpreter), like test_comfyui_real.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]


def test_gpus_input_through_a_real_comfyui(tmp_path):
    comfyui = os.environ.get("COMFYUI_PATH")
    if not comfyui or not (Path(comfyui) / "main.py").is_file():
        print("SKIP multi-GPU real-ComfyUI test: set COMFYUI_PATH to a ComfyUI checkout (and COMFYUI_PYTHON)")
        pytest.skip("COMFYUI_PATH is not set to a ComfyUI checkout")
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    script = ROOT / "benchmarks" / "bench_multigpu_comfyui.py"
    command = [python, str(script), "--comfyui", comfyui, "--python", python, "--smoke", "--work", str(tmp_path)]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| Model Loader gpus 'cpu,cpu' | 2 |" in proc.stdout and "workers stopped on /free: yes" in proc.stdout
    log = (tmp_path / "comfyui.log").read_text()
    assert "[wan worker 1]" in log, log[-3000:]
    assert not any(path in log for path in ("wan_core/parallel/", "nodes/multigpu.py")), log[-3000:]  # no traceback
