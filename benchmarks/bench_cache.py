"""Step caches and CFG savings on a full-size random-weight Wan2.1 T2V 1.3B: DiT calls, time, error.

    python benchmarks/bench_cache.py                 # H200: 1.3B, 50 steps, 832x480x81, CFG 5 (~5 min)
    python benchmarks/bench_cache.py --steps 30      # shorter
    python benchmarks/bench_cache.py --smoke         # tiny model on the CPU, a few steps (checks the script)

Every configuration samples the same noise and prompts with wan_core's own loop (UniPC, shift 5); the
uncached run is the peer. Per configuration: DiT branch evaluations made (a CFG step needs 2), steps that
ran the DiT, wall time of the whole sampling call, speedup against the uncached run and the relative error
of the final latent against it. Random weights say nothing about visual quality: the error only shows how
far a cache moves the result on this model.

Configurations run in the order listed and the script stops starting new ones when the next could end past
--budget-s (each takes at most the uncached time), so it always finishes and prints its table.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import rel  # noqa: E402

from wan_core.conditioning.types import Conditioning  # noqa: E402
from wan_core.progress import RunHooks  # noqa: E402
from wan_core.sampling import SamplerSettings, sample  # noqa: E402
from wan_core.sampling.cache import EasyCacheSettings, MagCacheSettings, TeaCacheSettings  # noqa: E402
from wan_core.sampling.guidance import GuidanceOptions  # noqa: E402


@dataclass
class Config:
    name: str
    settings: dict[str, Any] = field(default_factory=dict)  # SamplerSettings fields besides the common ones


CONFIGS = [
    Config("none"),
    Config("easycache 0.2", {"cache": EasyCacheSettings(reuse_threshold=0.2)}),
    Config("magcache 0.12 K2 R0.2", {"cache": MagCacheSettings(threshold=0.12, k=2, retention=0.2)}),
    Config("teacache 0.2 e0", {"cache": TeaCacheSettings(threshold=0.2)}),
    Config("easycache 0.1", {"cache": EasyCacheSettings(reuse_threshold=0.1)}),
    Config("magcache 0.24 K4 R0.1", {"cache": MagCacheSettings(threshold=0.24, k=4, retention=0.1)}),
    Config("teacache 0.1 e0", {"cache": TeaCacheSettings(threshold=0.1)}),
    Config("cfg steps [0, 0.5)", {"guidance": GuidanceOptions(cfg_end=0.5)}),
    Config("cfg-zero* + zero-init 1", {"guidance": GuidanceOptions(cfg_zero_star=True, zero_init_steps=1)}),
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny random model on the CPU (checks the script)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (50; smoke: 8)")
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--size", default="832x480", help="WIDTHxHEIGHT in pixels")
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--budget-s", type=float, default=320.0, help="stop starting configurations after this")
    p.add_argument("--only", nargs="+", help="run only configurations whose name starts with one of these")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def load_model(args: argparse.Namespace, device: torch.device):
    """(DiT, latent shape [C, T, h, w], text width): the released 1.3B shapes, or the tiny model (smoke)."""
    import wan_core

    if args.smoke:
        from wan_core.dit.tiny import tiny_dit_state_dict

        dit = wan_core.load_dit(tiny_dit_state_dict("wan2.1-t2v", seed=args.seed), device=device, dtype="fp32")
        return dit, (16, 3, 16, 16), dit.config.text_dim
    from bench_dit import latent_shape, random_weights

    from wan_core.dit.config import released_config

    config = released_config("wan2.1-t2v-1.3b")
    width, height = (int(v) for v in args.size.lower().split("x"))
    dit = wan_core.load_dit(random_weights(config, device, args.seed), device=device)
    return dit, latent_shape(config, args.frames, width, height), config.text_dim


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_config(dit, config: Config, base: dict, prompts, shape, device) -> dict[str, Any]:
    reports: list = []
    settings = SamplerSettings(**base, **config.settings)
    sync(device)
    start = time.perf_counter()
    latent = sample(dit, *prompts, Conditioning(latent_shape=shape), settings, RunHooks(on_report=reports.append))
    sync(device)
    report = reports[-1]
    return {
        "name": config.name,
        "seconds": time.perf_counter() - start,
        "calls": report.dit_calls,
        "needed": report.needed_calls,
        "steps_run": sum(1 for m in report.marks if m in "RP"),
        "marks": report.marks,
        "latent": latent,
    }


def table(rows: list[dict[str, Any]], steps: int) -> str:
    base = rows[0]
    lines = [
        "| configuration | DiT calls | steps that ran the DiT | wall s | speedup | rel err vs none |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        err = rel(r["latent"], base["latent"])
        lines.append(
            f"| {r['name']} | {r['calls']} / {base['needed']} | {r['steps_run']} / {steps} | {r['seconds']:.1f} | "
            f"{base['seconds'] / r['seconds']:.2f}x | {err:.3e} |"
        )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    if not args.smoke and not torch.cuda.is_available():
        print("ERROR: this benchmark needs a CUDA GPU (use --smoke for the tiny CPU check).")
        return 2
    device = torch.device("cpu" if args.smoke else "cuda")
    steps = args.steps or (8 if args.smoke else 50)
    started = time.perf_counter()
    dit, shape, text_dim = load_model(args, device)
    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    prompts = [[torch.randn(n, text_dim, generator=gen).to(device)] for n in (24, 60)]  # positive, negative
    base = dict(steps=steps, shift=5.0, cfg=args.cfg, solver="unipc", seed=args.seed)
    tokens = shape[1] * (shape[2] // 2) * (shape[3] // 2)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"{'tiny' if args.smoke else 'wan2.1-t2v-1.3b'} random weights, latent {list(shape)} = {tokens} tokens, "
        f"{steps} steps, cfg {args.cfg}; torch {torch.__version__}; {gpu}; loaded in {time.perf_counter() - started:.1f} s"
    )
    with torch.no_grad():  # warm-up: kernels, autotuning
        dit(torch.randn(2, *shape, device=device), torch.tensor([999, 999], device=device), prompts[0] * 2)
    configs = [c for c in CONFIGS if c.name == "none" or not args.only or c.name.startswith(tuple(args.only))]
    rows: list[dict[str, Any]] = []
    for config in configs:
        elapsed = time.perf_counter() - started
        if rows and elapsed + rows[0]["seconds"] > args.budget_s:
            print(f"skipped {config.name!r}: it could end past --budget-s {args.budget_s:.0f} s")
            continue
        row = run_config(dit, config, base, prompts, shape, device)
        rows.append(row)
        print(f"{row['name']:26s} {row['seconds']:7.1f} s  {row['calls']:4d} DiT calls  {row['marks']}", flush=True)
    print()
    print(table(rows, steps))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
