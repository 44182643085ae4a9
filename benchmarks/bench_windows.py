"""Context windows vs one DiT call: time and peak memory of one step's velocity on a long latent.

    python benchmarks/bench_windows.py --preset 1.3b --frames 161 --size 832x480
    python benchmarks/bench_windows.py --smoke          # tiny random DiT on the CPU (checks the script runs)

Random bf16 weights of a released-size DiT (as bench_dit.py). For the same latent, times the plain
forward (all frames in one attention) and the windowed velocity of wan_core's sampling strategy
(static and uniform schedules, windows of --length latent frames overlapping by --overlap), and prints
each one's median ms, peak GiB and the ratio windowed / plain. Attention is quadratic in the token
count, so windows trade a few more DiT calls for a much smaller attention and activation footprint.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dit import PRESETS, latent_shape, random_weights  # noqa: E402
from timing import time_cuda  # noqa: E402

import wan_core  # noqa: E402
from wan_core.conditioning.types import Conditioning  # noqa: E402
from wan_core.dit.config import released_config  # noqa: E402
from wan_core.dit.tiny import tiny_dit_config, tiny_dit_state_dict  # noqa: E402
from wan_core.sampling.guidance import StepInputs  # noqa: E402
from wan_core.sampling.windows import ContextWindowing, ContextWindows  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="1.3b")
    p.add_argument("--frames", type=int, default=161, help="pixel frames (4n+1)")
    p.add_argument("--size", default="832x480", help="WIDTHxHEIGHT in pixels")
    p.add_argument("--length", type=int, default=21, help="window length in latent frames")
    p.add_argument("--overlap", type=int, default=6, help="window overlap in latent frames")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="tiny random DiT on the CPU, 2 runs: only checks the script")
    return p.parse_args()


def build(args: argparse.Namespace) -> tuple[torch.nn.Module, tuple[int, int, int, int], torch.device]:
    if args.smoke:
        dit = wan_core.load_dit(tiny_dit_state_dict("wan2.1-t2v"), device="cpu", dtype="fp32")
        return dit, (16, (args.frames - 1) // 4 + 1, 4, 4), torch.device("cpu")
    device = torch.device("cuda")
    config = released_config(PRESETS[args.preset])
    width, height = (int(v) for v in args.size.lower().split("x"))
    dit = wan_core.load_dit(random_weights(config, device, seed=0), device=device, dtype=torch.bfloat16)
    return dit, latent_shape(config, args.frames, width, height), device


def timed(fn, runs: int, device: torch.device) -> tuple[float, float]:
    """(median ms, peak GiB); wall-clock on the CPU (peak memory not measured there)."""
    if device.type == "cuda":
        ms, peak, _ = time_cuda(fn, runs)
        return ms, peak
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return sorted(times)[len(times) // 2], float("nan")


def main() -> int:
    args = parse_args()
    runs = 2 if args.smoke else args.runs
    dit, shape, device = build(args)
    text_dim = tiny_dit_config("wan2.1-t2v").text_dim if args.smoke else dit.config.text_dim
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(1, *shape, generator=gen, device=device)
    context = [torch.randn(64, text_dim, generator=gen, device=device)]
    inputs = StepInputs(torch.tensor([700.0], device=device), context, None, {})
    cond = Conditioning(latent_shape=shape)

    def predict(xw: torch.Tensor, step_inputs: StepInputs) -> torch.Tensor:
        return dit(xw, step_inputs.t, step_inputs.positive, **step_inputs.extras)

    rows = [("one call", *timed(lambda: predict(x, inputs), runs, device))]
    for schedule in ("static", "uniform"):
        windows = ContextWindowing(ContextWindows(args.length, args.overlap, schedule), cond)
        ms, peak = timed(lambda w=windows: w.velocity(predict, x, inputs, 1, lambda: None), runs, device)
        rows.append((f"windows {schedule} {args.length}/{args.overlap}", ms, peak))
    name = "tiny (smoke)" if args.smoke else f"{args.preset} {args.size} {args.frames} frames"
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"{name}, latent {list(shape)}, {gpu}, torch {torch.__version__}")
    print("| run | ms / step (1 branch) | peak GiB | time ratio vs one call |")
    print("|---|---|---|---|")
    for label, ms, peak in rows:
        print(f"| {label} | {ms:.1f} | {peak:.2f} | {ms / rows[0][1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
