"""Cost of the NaN/Inf guards (issue 14) next to the work they guard, on a GPU.

    python benchmarks/bench_guards.py                 # 1.3B DiT at 832x480, 81 frames; 14B block weights
    python benchmarks/bench_guards.py --smoke         # tiny sizes, also runs on CPU (a wiring check)

* Loading: ``wan_core.finite.all_finite`` on every tensor of one Wan 14B block (bf16 and fp8), measured
  against the host-to-device copy that materialisation does anyway for the same tensors.
* Sampling: ``LatentGuard.check`` (one reduction and one scalar read per step) on the latent, measured
  against one DiT forward of the same latent (random bf16 weights, as benchmarks/bench_dit.py makes them).

Prints each ratio guard/peer; both should stay in the low percent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dit import latent_shape, random_weights  # noqa: E402

from wan_core.dit.config import released_config  # noqa: E402
from wan_core.finite import LatentGuard, all_finite  # noqa: E402


def timed(fn, runs: int, device: torch.device) -> float:
    """Median wall ms of ``fn()`` (synchronised: the guards' cost includes their sync)."""
    fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def block_tensors(dim: int, ffn: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """The Linear weights of one Wan DiT block (self- and cross-attention q/k/v/o, the FFN), on the CPU."""
    shapes = [(dim, dim)] * 8 + [(ffn, dim), (dim, ffn)]
    return [torch.randn(s).to(dtype) for s in shapes]


def bench_loading(dim: int, ffn: int, device: torch.device, runs: int) -> None:
    for dtype in (torch.bfloat16, torch.float8_e4m3fn):
        host = block_tensors(dim, ffn, dtype)
        on_device = [t.to(device) for t in host]
        copy = timed(lambda host=host: [t.to(device) for t in host], runs, device)
        check = timed(lambda on_device=on_device: [all_finite(t) for t in on_device], runs, device)
        gib = sum(t.numel() * t.element_size() for t in host) / 2**30
        print(
            f"load, one block ({gib:.2f} GiB {dtype}): copy to {device.type} {copy:8.2f} ms, all_finite "
            f"{check:7.2f} ms, check/copy {check / copy:.3f}"
        )


def bench_sampling(preset: str | None, frames: int, size: str, device: torch.device, runs: int) -> None:
    """``preset`` None: the tiny test DiT (smoke)."""
    import wan_core
    from wan_core.dit.tiny import tiny_dit_state_dict

    weights = (
        tiny_dit_state_dict("wan2.1-t2v") if preset is None else random_weights(released_config(preset), device, 0)
    )
    model = wan_core.load_dit(weights, device=device)
    config = model.config
    width, height = (int(v) for v in size.split("x"))
    c, t, h, w = latent_shape(config, frames, width, height)
    x = torch.randn(1, c, t, h, w, device=device)
    context = torch.randn(1, 512, config.text_dim, device=device, dtype=torch.bfloat16)
    timestep = torch.tensor([700.0], device=device)
    guard = LatentGuard(50)
    with torch.no_grad():
        step = timed(lambda: model(x, timestep, context), runs, device)
    check = timed(lambda: guard.check(x, 1, 5.0), runs * 10, device)
    print(
        f"sample, {config.variant} {width}x{height}x{frames} (latent {list(x.shape)}): DiT forward {step:9.2f} ms, "
        f"latent guard {check:6.3f} ms, guard/forward {check / step:.5f}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes; runs on CPU too")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        print("ERROR: this benchmark needs a CUDA GPU (or --smoke for a CPU wiring check).")
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}; {name}")
    if args.smoke:
        bench_loading(256, 512, device, 2)
        bench_sampling(None, 5, "64x64", device, 2)
    else:
        bench_loading(5120, 13824, device, args.runs)
        bench_sampling("wan2.1-t2v-1.3b", 81, "832x480", device, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
