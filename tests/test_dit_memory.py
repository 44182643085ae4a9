"""Loading a bf16 DiT file must not hold a second copy: peak RSS growth < 1.3x the file size.

The load runs in a subprocess so that its peak RSS (ru_maxrss) is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch
from safetensors.torch import save_file

from wan_core.dit.config import DiTConfig
from wan_core.dit.model import WanDiT

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    import psutil, torch
    import wan_core
    import wan_core.dit.loader  # imports done before the baseline
    torch.zeros(1)
    base = psutil.Process().memory_info().rss
    model = wan_core.load_dit(sys.argv[1], device="cpu")
    try:  # VmHWM belongs to this process image; ru_maxrss may carry the parent's peak across exec
        with open("/proc/self/status") as f:
            peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    dtype = str(model.blocks[0].ffn[0].weight.dtype)
    print(json.dumps({"base": base, "peak": peak, "dtype": dtype, "variant": model.config.variant}))
    """
)


def test_bf16_load_peak_rss_below_1_3x_file(tmp_path):
    config = DiTConfig(
        variant="wan2.1-t2v",
        family="wan2.1",
        task="t2v",
        size_label=None,
        dim=1024,
        ffn_dim=4096,
        num_heads=8,
        num_layers=6,
        in_dim=16,
        out_dim=16,
        text_dim=256,
        freq_dim=256,
    )
    shapes = WanDiT(config, device="meta").state_dict()
    gen = torch.Generator().manual_seed(0)
    sd = {k: (torch.randn(v.shape, generator=gen) * 0.02).to(torch.bfloat16) for k, v in shapes.items()}
    path = tmp_path / "dit_bf16.safetensors"
    save_file(sd, str(path))
    del sd
    size = path.stat().st_size
    assert size > 150e6, size
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(tmp_path),
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    growth = result["peak"] - result["base"]
    print(f"file {size / 1e6:.0f} MB, peak RSS growth {growth / 1e6:.0f} MB ({growth / size:.2f}x)")
    assert result["dtype"] == "torch.bfloat16" and result["variant"] == "wan2.1-t2v"
    assert growth < 1.3 * size, f"peak RSS grew {growth / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"


def _env() -> dict:
    import os
    from pathlib import Path

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env
