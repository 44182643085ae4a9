"""The multi-GPU sample through a real ComfyUI: Wan Model Loader with gpus "" vs "0,1".

    python3 benchmarks/bench_multigpu_comfyui.py --comfyui /path/to/ComfyUI            # 14B 1280x720x81
    python3 benchmarks/bench_multigpu_comfyui.py --comfyui /path/to/ComfyUI --smoke    # tiny, CPU, gloo

Writes random-weight model files (14B DiT in bf16, a 4096-wide one-layer umT5, a tiny VAE
used only for the latent's shape) into a work folder, links this pack into ComfyUI's
custom_nodes, starts ``main.py`` (``--cpu`` with --smoke) and queues one API prompt per
configuration: loader -> text encode -> empty latent -> Wan Sampler -> native SaveLatent.
Each configuration runs twice: a 1-step prompt on a small 1-frame latent (loads the model,
with gpus spawns the worker, warms the kernels) and the timed N-step prompt, where ComfyUI's
cache re-runs only the latent node, the sampler and SaveLatent. Time = the prompt's execution_start -> execution_success
in /history. Between configurations ``/free`` unloads the models (which also stops the
GPU workers). Prints the sampler time, the speedup and the rel err of the latent vs 1 GPU.

ComfyUI's Python (--python, default this one) needs ComfyUI's requirements and this pack's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import comfy_server  # noqa: E402  (benchmarks/ is on the path from here on)
from comfy_server import ComfyServer, packs_linked, sampler_runs, save_tensors, umt5_tensors, wan_t2v_graph  # noqa: E402

LINK_NAME = "comfyui-wan-core-bench"
DIT, TE, VAE = "bench_dit.safetensors", "bench_umt5.safetensors", "wan_2.1_vae.safetensors"
TARGET_SPEEDUP = 1.85


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="ComfyUI checkout (or $COMFYUI_PATH)")
    p.add_argument("--python", default=os.environ.get("COMFYUI_PYTHON") or sys.executable, help="ComfyUI's Python")
    p.add_argument("--gpus", default="0,1", help="the multi-GPU configuration's gpus input")
    p.add_argument("--preset", choices=("1.3b", "14b"), default="14b")
    p.add_argument("--size", default="1280x720")
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--work", help="folder for models/outputs (default: a new temporary folder, removed after)")
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds one prompt may take")
    p.add_argument("--max-rel-err", type=float, default=None, help="default: 3e-2 (bf16), 1e-5 (--smoke)")
    p.add_argument("--smoke", action="store_true", help="tiny models on the CPU (gpus 'cpu,cpu'), checks the script")
    args = p.parse_args()
    if not args.comfyui or not (Path(args.comfyui) / "main.py").is_file():
        p.error("--comfyui (or $COMFYUI_PATH) must name a ComfyUI checkout")
    if args.smoke:
        args.gpus, args.size, args.frames, args.steps = "cpu,cpu", "80x48", 5, 2
    if args.max_rel_err is None:
        args.max_rel_err = 1e-5 if args.smoke else 3e-2
    return args


# ---------------------------------------------------------------------------------- model files


def write_models(models: Path, args: argparse.Namespace) -> None:
    from wan_core.tiny_build import write_tiny_models

    write_tiny_models(models, names=(VAE,))
    started = time.perf_counter()
    if args.smoke:
        from wan_core.dit.tiny import tiny_dit_state_dict

        dit, t5 = tiny_dit_state_dict("wan2.1-t2v", seed=1), umt5_tensors(None)
    else:
        from bench_dit import PRESETS, random_weights

        from wan_core.dit.config import released_config

        config = released_config(PRESETS[args.preset])
        dit = {k: v.cpu() for k, v in random_weights(config, torch.device("cuda"), 0).items()}
        t5 = umt5_tensors(config.text_dim)
    save_tensors(models / "diffusion_models" / DIT, dit)
    save_tensors(models / "text_encoders" / TE, t5)
    print(f"model files written in {time.perf_counter() - started:.0f} s", flush=True)


# ---------------------------------------------------------------------------------- ComfyUI server


def start_comfyui(args: argparse.Namespace, work: Path) -> ComfyServer:
    """ComfyUI with this pack only (``--cpu`` for the smoke run), started and answering."""
    comfy_server.prepare_work(work)
    smoke = (["--cpu"], {"OMP_NUM_THREADS": "1"}) if args.smoke else ([], {})
    server = ComfyServer(Path(args.comfyui), args.python, work, (LINK_NAME,), work / "comfyui.log", *smoke)
    server.start()
    return server


def prompt(args: argparse.Namespace, gpus: str, steps: int, tag: str, warm: bool = False) -> dict:
    """The API graph; ``warm``: a small 1-frame latent (loads the models and the kernels, costs little)."""
    width, height = (int(v) for v in args.size.lower().split("x"))
    frames = args.frames
    if warm:
        width, height, frames = min(width, 256), min(height, 256), 1
    files = {"model": DIT, "low_noise_model": "none", "text_encoder": TE, "vae": VAE}
    return wan_t2v_graph(files, (width, height, frames), steps, tag, gpus=gpus)


def run_prompt(server: ComfyServer, graph: dict, timeout_s: float) -> tuple[float, dict]:
    """Queue a prompt, wait for it; (execution seconds from /history, its outputs)."""
    entry, error = server.wait(server.queue(graph), timeout_s)
    if error or entry is None:
        raise SystemExit(f"prompt failed: {error}\n{server.log_text()[-4000:]}")
    messages = dict((name, data) for name, data in entry["status"]["messages"])
    seconds = (messages["execution_success"]["timestamp"] - messages["execution_start"]["timestamp"]) / 1000
    return seconds, entry["outputs"]


def saved_latent(work: Path, outputs: dict) -> torch.Tensor:
    from safetensors.torch import load_file

    (info,) = outputs["7"]["latents"]
    return load_file(str(work / "out" / info["subfolder"] / info["filename"]))["latent_tensor"].float()


@dataclass(frozen=True)
class Timing:
    """One configuration's timed prompt: the prompt's seconds, the sampler's own (from its log line)."""

    prompt_s: float
    sampler_s: float
    reloaded: bool  # the loader ran again during the timed prompt (the warm-up did not count)


def measure(args, server: ComfyServer, gpus: str, tag: str) -> tuple[Timing, torch.Tensor]:
    run_prompt(server, prompt(args, gpus, 1, f"{tag}_warm", warm=True), args.timeout)
    offset = len(server.log_text())
    seconds, outputs = run_prompt(server, prompt(args, gpus, args.steps, tag), args.timeout)
    log = server.log_text()[offset:]
    runs = sampler_runs(log)
    timing = Timing(seconds, runs[-1][0] if runs else float("nan"), "Loaded wan" in log)
    server.free()
    return timing, saved_latent(server.work, outputs)


SERVER_LINES = ("Wan Sampler:", "worker", "Requested to load", "unloaded", "streaming", "got prompt", "Prompt executed")


def print_server_lines(log_path: Path) -> None:
    """The server's lines that explain a time: per-step times, worker starts and stops, (un)loads."""
    print("\nComfyUI log (sampler, workers, loads):")
    for line in log_path.read_text(errors="replace").splitlines():
        if any(key in line for key in SERVER_LINES):
            print("  " + line.strip())


def print_table(args: argparse.Namespace, one: Timing, several: Timing, err: float) -> None:
    n = len(args.gpus.split(","))
    print(f"\nComfyUI, Wan Sampler, {args.steps} steps, cfg 5, {args.frames}x{args.size}; torch {torch.__version__}")
    print("\n| run | GPUs | prompt time (s) | speedup | sampler time (s) | speedup | rel err vs 1 GPU |")
    print("|---|---|---|---|---|---|---|")
    print(f"| Model Loader gpus '' | 1 | {one.prompt_s:.2f} | 1.00x | {one.sampler_s:.2f} | 1.00x | - |")
    print(
        f"| Model Loader gpus '{args.gpus}' | {n} | {several.prompt_s:.2f} | {one.prompt_s / several.prompt_s:.2f}x "
        f"| {several.sampler_s:.2f} | {one.sampler_s / several.sampler_s:.2f}x | {err:.2e} |"
    )
    met = one.prompt_s / several.prompt_s >= TARGET_SPEEDUP
    print(f"\nspeedup target >= {TARGET_SPEEDUP}x (prompt time): {'MET' if met else 'NOT MET'}")
    for name, timing in (("1 GPU", one), (f"{n} GPUs", several)):
        if timing.reloaded:
            print(f"WARNING: the {name} timed prompt loaded the model again (its time includes the load)")


def main() -> int:
    args = parse_args()
    if not args.smoke and torch.cuda.device_count() < 2:
        print(f"ERROR: needs 2 CUDA GPUs, found {torch.cuda.device_count()} (use --smoke on a CPU).")
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="wan_mgpu_comfy_"))
    if not (work / "models" / "diffusion_models" / DIT).is_file():
        write_models(work / "models", args)
    try:
        with packs_linked(Path(args.comfyui), {LINK_NAME: ROOT}):
            server = start_comfyui(args, work)
            try:
                one, single = measure(args, server, "", "one_gpu")
                several, multi = measure(args, server, args.gpus, "multi_gpu")
                stopped = server.wait_for_log("GPU workers stopped", 60.0)
                print_server_lines(server.log_path)
            finally:
                server.stop()
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    err = float((multi.double() - single.double()).norm() / single.double().norm())
    print_table(args, one, several, err)
    print(f"workers stopped on /free: {'yes' if stopped else 'NO'}")
    return 0 if err <= args.max_rel_err and stopped and not (one.reloaded or several.reloaded) else 1


if __name__ == "__main__":
    sys.exit(main())
