"""One video on 2 GPUs: 14B DiT forward and a 4-step sample, 1 GPU vs sequence parallel vs CFG parallel.

    python3 benchmarks/bench_multigpu.py                 # 14B, 1280x720x81, 2 GPUs (NCCL)
    python3 benchmarks/bench_multigpu.py --smoke         # tiny DiT on the CPU, 2 processes (gloo)

Starts one process per GPU (torch.multiprocessing; the same as torchrun would). Every rank
builds the same random bf16 weights from one seed (checked: the weight fingerprints of all
ranks must agree). Then, in one run:

1. DiT forward on rank 0 alone (the peer), then sequence parallel on all ranks
   (tokens split, Ulysses all-to-all over heads; ``run_forward`` as the CLI and ComfyUI use it);
2. a 4-step UniPC sample with cfg (cond + uncond batched) on rank 0 alone, then through the
   real rank-0-drives-workers path (``ParallelDiT`` + ``serve``) with sequence parallelism, then
   with the CFG split (cond on GPU 0, uncond on GPU 1).

Prints time, speedup over 1 GPU, rel err of the output vs the 1-GPU output, and the share
of the step time spent in collectives (CUDA events around each collective on rank 0; with
blocking NCCL waits this includes waiting for the slower rank). Exits 1 when an output
differs by more than --max-rel-err.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from timing import rel  # noqa: E402

from wan_core.conditioning import Conditioning  # noqa: E402
from wan_core.parallel import Layout, ParallelOptions  # noqa: E402
from wan_core.parallel.distributed import RankInfo, timeout  # noqa: E402
from wan_core.parallel.links import BroadcastInbox, BroadcastLink  # noqa: E402
from wan_core.parallel.local import spawn_local  # noqa: E402
from wan_core.parallel.runner import ForwardCall, run_forward  # noqa: E402
from wan_core.parallel.service import Hosted, Leader, ModelHost, ParallelDiT, serve  # noqa: E402
from wan_core.parallel.timing import CommTimer  # noqa: E402
from wan_core.sampling import SamplerSettings, sample  # noqa: E402

PRESETS = {"1.3b": "wan2.1-t2v-1.3b", "14b": "wan2.1-t2v-14b"}
TARGET_SPEEDUP = 1.85


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="14b")
    p.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT in pixels")
    p.add_argument("--frames", type=int, default=81, help="pixel frames (4n+1)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=2, help="timed forwards per configuration (after one warm-up)")
    p.add_argument("--gpus", type=int, default=2)
    p.add_argument("--attention", default="auto", help="attention kernel (auto, sdpa, flash_attn, ...)")
    p.add_argument("--sp-attention", choices=("auto", "ulysses", "ring"), default="auto")
    p.add_argument("--timeout", type=float, default=1800.0, help="collective timeout (rank 1 waits for rank 0)")
    p.add_argument("--max-rel-err", type=float, default=None, help="default: 3e-2 (bf16), 1e-5 (--smoke fp32)")
    p.add_argument("--smoke", action="store_true", help="tiny DiT, fp32, on the CPU with gloo (checks the script)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.max_rel_err is None:
        args.max_rel_err = 1e-5 if args.smoke else 3e-2
    if args.smoke:
        args.size, args.frames, args.runs = "80x48", 5, 1
        args.steps = min(args.steps, 2)
    return args


# ---------------------------------------------------------------------------------- model and inputs


def build_dit(args: argparse.Namespace, device: torch.device):
    import wan_core

    if args.smoke:
        from wan_core.dit.tiny import tiny_dit_state_dict

        return wan_core.load_dit(tiny_dit_state_dict("wan2.1-t2v", seed=args.seed), device=device, dtype="fp32")
    from bench_dit import random_weights

    from wan_core.dit.config import released_config

    weights = random_weights(released_config(PRESETS[args.preset]), device, args.seed)
    return wan_core.load_dit(weights, device=device, attention=args.attention)


def latent_shape(dit, args: argparse.Namespace) -> tuple[int, int, int, int]:
    width, height = (int(v) for v in args.size.lower().split("x"))
    return dit.config.out_dim, (args.frames - 1) // 4 + 1, height // 8, width // 8


def make_inputs(dit, args: argparse.Namespace, device: torch.device):
    """x [1, C, T, h, w], t [1], positive / negative text contexts [L, text_dim] (same on every rank)."""
    gen = torch.Generator().manual_seed(args.seed + 1)
    c, t, h, w = latent_shape(dit, args)
    x = torch.randn(1, c, t, h, w, generator=gen).to(device)
    text = dit.config.text_dim
    positive = torch.randn(24, text, generator=gen).to(device)
    negative = torch.randn(40, text, generator=gen).to(device)
    return x, torch.tensor([900.0], device=device), positive, negative


def fingerprint(dit) -> float:
    return float(sum(p.detach().double().sum().item() for p in dit.parameters()))


def align_weights(dit, control, info: RankInfo) -> None:
    """Every rank must hold rank 0's weights: compare fingerprints, broadcast the weights if they differ."""
    prints: list = [None] * info.world
    dist.all_gather_object(prints, fingerprint(dit), group=control)
    if len(set(prints)) == 1:
        return
    if info.rank == 0:
        print(f"seeded weights differ between ranks ({prints}); broadcasting rank 0's", flush=True)
    for p in dit.parameters():
        dist.broadcast(p.data, src=0)
    dist.all_gather_object(prints, fingerprint(dit), group=control)
    if len(set(prints)) != 1:
        raise SystemExit(f"ranks still hold different weights: {prints}")


# ---------------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, runs: int, timer: CommTimer | None = None) -> tuple[float, float, object]:
    """(median seconds, comm seconds per run, last output) after one warm-up call."""
    out = fn()
    sync(device)
    if timer is not None:
        timer.reset()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - started)
    comm = timer.seconds() / runs if timer is not None else 0.0
    return statistics.median(times), comm, out


# ---------------------------------------------------------------------------------- phases


def sample_once(model, positive, negative, shape, args, device) -> tuple[float, torch.Tensor]:
    settings = SamplerSettings(steps=args.steps, shift=5.0, cfg=args.cfg, seed=args.seed, solver="unipc")
    sync(device)
    started = time.perf_counter()
    z = sample(model, [positive], [negative], Conditioning(latent_shape=shape), settings, device=device)
    sync(device)
    return time.perf_counter() - started, z


def parallel_sample(info, dit, layout, control, inputs, args, timer) -> tuple[float, float, torch.Tensor] | None:
    """Rank 0 samples through ParallelDiT (the CLI / ComfyUI path); the other ranks serve until it stops."""
    _x, _t, positive, negative = inputs
    if info.rank != 0:
        host = ModelHost(layout)
        host.models["dit"] = Hosted(dit)
        serve(host, BroadcastInbox(control))
        return None
    leader = Leader(layout, BroadcastLink(control))
    proxy = ParallelDiT(leader, "dit", dit)
    shape = latent_shape(dit, args)
    sample_once(proxy, positive, negative, shape, replace_steps(args, 1), info.device)  # warm-up
    timer.reset()
    seconds, z = sample_once(proxy, positive, negative, shape, args, info.device)
    comm = timer.seconds()
    leader.stop()
    return seconds, comm, z


def replace_steps(args: argparse.Namespace, steps: int) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "steps": steps})


def bench_rank(info: RankInfo, arg_list: list[str], out_path: str) -> None:
    args = parse_args(arg_list)
    if info.device.type == "cpu":
        torch.set_num_threads(1)
    control = dist.new_group(backend="gloo", timeout=timeout(args.timeout))
    timer = CommTimer(info.device)
    sp_options = ParallelOptions(cfg_split=False, attention=args.sp_attention, timeout_s=args.timeout)
    layout_sp = Layout(sp_options, info.device, timer)
    layout_cfg = Layout(ParallelOptions(cfg_split=True, timeout_s=args.timeout), info.device, timer)
    started = time.perf_counter()
    dit = build_dit(args, info.device)
    align_weights(dit, control, info)
    x, t, positive, negative = inputs = make_inputs(dit, args, info.device)
    rows: dict = {"setup_s": time.perf_counter() - started}
    shape = latent_shape(dit, args)
    with torch.no_grad():
        if info.rank == 0:  # 1 GPU: the peer every ratio is measured against
            rows["fwd1"] = timed(lambda: dit(x, t, [positive]), info.device, args.runs)  # also warms the sample
            rows["sample1"] = sample_once(dit, positive, negative, shape, args, info.device)
        dist.barrier(group=control)
        call = ForwardCall(x, t, [positive])
        rows["fwd_sp"] = timed(lambda: run_forward(dit, layout_sp, call), info.device, args.runs, timer)
        rows["sample_sp"] = parallel_sample(info, dit, layout_sp, control, inputs, args, timer)
        dist.barrier(group=control)
        rows["sample_cfg"] = parallel_sample(info, dit, layout_cfg, control, inputs, args, timer)
    if info.rank == 0:
        report(args, dit, info, rows, layout_sp, out_path)


# ---------------------------------------------------------------------------------- report


def report(args, dit, info, rows, layout_sp, out_path) -> None:
    c = dit.config
    device_name = torch.cuda.get_device_name(info.device) if info.device.type == "cuda" else "CPU"
    print(
        f"\n{c.variant} (dim {c.dim}, {c.num_layers} layers, {c.num_heads} heads), video {args.frames}x{args.size}, "
        f"latent {latent_shape(dit, args)}; {info.world} x {device_name}; torch {torch.__version__}; "
        f"compute {dit.dtype}, attention {dit.attention_backend}; setup {rows['setup_s']:.0f} s"
    )
    f1, _c, out1 = rows["fwd1"]
    fs, fs_comm, out_s = rows["fwd_sp"]
    s1, z1 = rows["sample1"]
    table = [
        ("DiT forward", 1, f1, None, None),
        (f"DiT forward, sequence parallel ({layout_sp.options.attention})", info.world, fs, rel(out_s, out1), fs_comm),
        (f"{args.steps}-step sample, cfg {args.cfg} (cond+uncond batched)", 1, s1, None, None),
    ]
    for key, name in (("sample_sp", "sequence parallel"), ("sample_cfg", "CFG parallel")):
        seconds, comm, z = rows[key]
        table.append((f"{args.steps}-step sample, {name}", info.world, seconds, rel(z, z1), comm))
    results = []
    print("\n| run | GPUs | time (s) | speedup | rel err vs 1 GPU | comm share |")
    print("|---|---|---|---|---|---|")
    for i, (name, gpus, seconds, err, comm) in enumerate(table):
        peer = table[0][2] if i < 2 else table[2][2]
        speedup = peer / seconds
        share = "-" if comm is None else f"{100 * comm / seconds:.1f}%"
        err_text = "-" if err is None else f"{err:.2e}"
        print(f"| {name} | {gpus} | {seconds:.2f} | {speedup:.2f}x | {err_text} | {share} |")
        results.append({"run": name, "gpus": gpus, "seconds": seconds, "speedup": speedup, "rel_err": err})
    worst = min(r["speedup"] for r in results if r["gpus"] > 1)
    bad = [r for r in results if r["rel_err"] is not None and r["rel_err"] > args.max_rel_err]
    print(f"\nslowest multi-GPU speedup {worst:.2f}x (target >= {TARGET_SPEEDUP}x on 2 GPUs): "
          f"{'MET' if worst >= TARGET_SPEEDUP else 'NOT MET'}")  # fmt: skip
    print(f"outputs within rel err {args.max_rel_err:g} of 1 GPU: {'yes' if not bad else 'NO: ' + str(bad)}")
    Path(out_path).write_text(json.dumps({"rows": results, "ok": not bad}))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device_type = "cpu" if args.smoke else "cuda"
    if device_type == "cuda" and torch.cuda.device_count() < args.gpus:
        print(f"ERROR: needs {args.gpus} CUDA GPUs, found {torch.cuda.device_count()} (use --smoke on a CPU).")
        return 2
    out = Path(tempfile.mkdtemp()) / "bench_multigpu.json"
    if device_type == "cpu":
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    spawn_local(bench_rank, args.gpus, device_type, (list(argv or sys.argv[1:]), str(out)), timeout_s=args.timeout)
    return 0 if json.loads(out.read_text())["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
