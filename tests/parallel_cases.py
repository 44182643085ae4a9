"""Rank functions for the multi-process tests (imported by spawned processes, so no pytest here).

Every rank builds the same tiny random-weight DiT and the same inputs from fixed seeds,
computes the single-process forward itself (no collectives), then the parallel one, and
rank 0 writes the relative errors to ``out_path`` (torch.save of {case: rel err}).
"""

from __future__ import annotations

import torch

import wan_core
from wan_core.dit.tiny import tiny_dit_state_dict
from wan_core.parallel import Layout, ParallelOptions
from wan_core.parallel.distributed import RankInfo
from wan_core.parallel.fsdp import shard_blocks
from wan_core.parallel.runner import ForwardCall, run_forward
from wan_core.tiny_models import TinySizes

SIX_HEADS = TinySizes(dit_dim=768, dit_ffn=256)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def tiny_dit(variant: str, sizes: TinySizes | None = None):
    kwargs = {"sizes": sizes} if sizes is not None else {}
    return wan_core.load_dit(tiny_dit_state_dict(variant, seed=3, **kwargs), device="cpu", dtype="fp32")


def _randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


def make_call(variant: str, batch: int, grid: tuple[int, int, int], seed: int = 0) -> ForwardCall:
    """Inputs of one forward: latent grid (f, gh, gw) tokens; distinct contexts per sample."""
    gen = torch.Generator().manual_seed(seed)
    f, gh, gw = grid
    channels = 48 if variant == "wan2.2-ti2v" else 16
    x = _randn(gen, batch, channels, f, 2 * gh, 2 * gw)
    context = [_randn(gen, 5 + i, 64) for i in range(batch)]
    t = torch.tensor([900.0 - 100 * i for i in range(batch)])
    extras: dict = {}
    if variant == "wan2.2-ti2v":  # per-token timesteps: frame 0 locked (t = 0)
        t = torch.full((batch, f * gh * gw), 700.0)
        t[:, : gh * gw] = 0.0
    if variant == "wan2.1-i2v":
        extras = {"y": _randn(gen, batch, 20, f, 2 * gh, 2 * gw), "clip_fea": _randn(gen, batch, 17, 64)}
    if variant == "wan2.1-vace":
        extras = {"vace_context": [_randn(gen, batch, 96, f, 2 * gh, 2 * gw)], "vace_scale": [0.7]}
    return ForwardCall(x, t, context, extras)


def compare(dit, layout: Layout, call: ForwardCall) -> float:
    dit.set_sequence_parallel(None)
    reference = dit(call.x, call.t, call.context, **call.extras)
    if layout.options.shard_weights:
        shard_blocks(dit, layout.mesh)
    out = run_forward(dit, layout, call)
    dit.set_sequence_parallel(None)
    return rel_err(out, reference)


# (name, variant, sizes, batch, grid, options)
CASES_TWO = [
    ("t2v-ulysses-pad", "wan2.1-t2v", None, 1, (1, 5, 7), ParallelOptions(cfg_split=False, attention="ulysses")),
    ("t2v-ulysses-even", "wan2.1-t2v", None, 1, (2, 3, 4), ParallelOptions(cfg_split=False, attention="ulysses")),
    ("t2v-ring-pad", "wan2.1-t2v", None, 1, (1, 5, 7), ParallelOptions(cfg_split=False, attention="ring")),
    ("ti2v-tokens", "wan2.2-ti2v", None, 1, (3, 3, 5), ParallelOptions(cfg_split=False)),
    ("i2v-tokens", "wan2.1-i2v", None, 1, (2, 3, 5), ParallelOptions(cfg_split=False)),
    ("vace-tokens", "wan2.1-vace", None, 1, (2, 3, 5), ParallelOptions(cfg_split=False)),
    ("t2v-cfg-split", "wan2.1-t2v", None, 2, (1, 5, 7), ParallelOptions(cfg_split=True)),
    ("t2v-batch1-with-cfg-option", "wan2.1-t2v", None, 1, (1, 5, 7), ParallelOptions(cfg_split=True)),
    ("vace-fsdp-tokens", "wan2.1-vace", None, 1, (1, 5, 7), ParallelOptions(cfg_split=False, shard_weights=True)),
    ("t2v-fsdp-cfg-split", "wan2.1-t2v", None, 2, (1, 5, 7), ParallelOptions(shard_weights=True)),
]

CASES_THREE = [
    ("t2v-ulysses-6heads-pad", "wan2.1-t2v", SIX_HEADS, 1, (1, 5, 7), ParallelOptions(attention="ulysses")),
    ("t2v-auto-ring-2heads-pad", "wan2.1-t2v", None, 1, (1, 5, 7), ParallelOptions(attention="auto")),
    ("ti2v-ring-3ranks", "wan2.2-ti2v", None, 2, (2, 3, 4), ParallelOptions(attention="ring")),
]

CASES_FOUR = [
    ("t2v-cfg2x-seq2", "wan2.1-t2v", None, 2, (1, 5, 7), ParallelOptions(cfg_split=True)),
]


def run_cases(info: RankInfo, cases: list, out_path: str) -> None:
    torch.manual_seed(0)
    errors: dict[str, float] = {}
    layouts: dict[ParallelOptions, Layout] = {}
    for name, variant, sizes, batch, grid, options in cases:
        if options not in layouts:  # every rank creates the same groups in the same order
            layouts[options] = Layout(options, info.device)
        errors[name] = compare(tiny_dit(variant, sizes), layouts[options], make_call(variant, batch, grid))
    if info.rank == 0:
        torch.save(errors, out_path)
