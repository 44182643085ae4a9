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
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

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
    from safetensors.torch import save_file

    from wan_core.text.tiny import tiny_t5_state_dict
    from wan_core.tiny_build import write_tiny_models
    from wan_core.tiny_models import TinySizes

    for folder in ("diffusion_models", "text_encoders", "vae"):
        (models / folder).mkdir(parents=True, exist_ok=True)
    write_tiny_models(models, names=(VAE,))
    started = time.perf_counter()
    if args.smoke:
        from wan_core.dit.tiny import tiny_dit_state_dict

        dit = tiny_dit_state_dict("wan2.1-t2v", seed=1)
        t5 = tiny_t5_state_dict(seed=2)
    else:
        from bench_dit import PRESETS, random_weights

        from wan_core.dit.config import released_config

        config = released_config(PRESETS[args.preset])
        dit = {k: v.cpu() for k, v in random_weights(config, torch.device("cuda"), 0).items()}
        wide = TinySizes(text_dim=config.text_dim, t5_layers=1, t5_heads=64, t5_d_kv=64, t5_d_ff=1024)
        t5 = tiny_t5_state_dict(seed=2, sizes=wide)
    save_file({k: v.contiguous() for k, v in dit.items()}, str(models / "diffusion_models" / DIT))
    save_file({k: v.contiguous() for k, v in t5.items()}, str(models / "text_encoders" / TE))
    print(f"model files written in {time.perf_counter() - started:.0f} s", flush=True)


# ---------------------------------------------------------------------------------- ComfyUI server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, payload: dict | None = None, timeout: float = 60) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            return json.loads(body) if body else {}
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{url}: HTTP {exc.code}: {exc.read().decode(errors='replace')[:2000]}") from exc


def start_comfyui(args: argparse.Namespace, work: Path) -> tuple[subprocess.Popen, str, Path]:
    folders = ("diffusion_models", "text_encoders", "vae")
    lines = ["wan_core_bench:", f"    base_path: {work / 'models'}"] + [f"    {f}: {f}" for f in folders]
    (work / "extra_model_paths.yaml").write_text("\n".join(lines) + "\n")
    for folder in ("user", "temp", "out"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [args.python, "main.py", "--listen", "127.0.0.1", "--port", str(port)]
    cmd += ["--extra-model-paths-config", str(work / "extra_model_paths.yaml"), "--output-directory", str(work / "out")]
    cmd += ["--user-directory", str(work / "user"), "--temp-directory", str(work / "temp")]
    cmd += ["--database-url", "sqlite:///:memory:", "--disable-all-custom-nodes", "--whitelist-custom-nodes", LINK_NAME]
    cmd += ["--cpu"] if args.smoke else []
    log_path = work / "comfyui.log"
    env = dict(os.environ, OMP_NUM_THREADS="1") if args.smoke else dict(os.environ)
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, cwd=args.comfyui, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ComfyUI exited ({process.returncode}):\n{log_path.read_text()[-4000:]}")
        try:
            http(f"{base}/system_stats", timeout=5)
            return process, base, log_path
        except OSError:
            time.sleep(1)
    raise SystemExit(f"ComfyUI did not start:\n{log_path.read_text()[-4000:]}")


def prompt(args: argparse.Namespace, gpus: str, steps: int, tag: str, warm: bool = False) -> dict:
    """The API graph; ``warm``: a small 1-frame latent (loads the models and the kernels, costs little)."""
    width, height = (int(v) for v in args.size.lower().split("x"))
    frames = args.frames
    if warm:
        width, height, frames = min(width, 256), min(height, 256), 1
    loader = {"model_name": DIT, "low_noise_model_name": "none", "weight_dtype": "auto", "attention": "auto"}
    sampler = {"seed": 7, "steps": steps, "cfg": 5.0, "cfg_low_noise": -1.0, "shift": 5.0, "solver": "unipc"}
    sampler |= {"denoise": 1.0, "moe_boundary": 0.0, "batch_size": 1}
    nodes = {
        "1": ("WanCoreModelLoader", {**loader, "block_swap": 0, "gpus": gpus}),
        "2": (
            "WanCoreTextEncoderLoader",
            {"text_encoder_name": TE, "device": "auto", "dtype": "auto", "keep_loaded": True},
        ),  # fmt: skip
        "3": ("WanCoreTextEncode", {"text_encoder": ["2", 0], "positive": "a lighthouse at dusk", "negative": ""}),
        "4": ("WanCoreVAELoader", {"vae_name": VAE, "dtype": "auto"}),
        "5": ("WanCoreEmptyVideoLatent", {"vae": ["4", 0], "width": width, "height": height, "length": frames}),
        "6": ("WanCoreSampler", {"model": ["1", 0], "text_embeds": ["3", 0], "conditioning": ["5", 0], **sampler}),
        "7": ("SaveLatent", {"samples": ["6", 0], "filename_prefix": f"bench/{tag}"}),
    }
    return {key: {"class_type": cls, "inputs": inputs} for key, (cls, inputs) in nodes.items()}


def run_prompt(base: str, graph: dict, timeout_s: float, log_path: Path) -> tuple[float, dict]:
    """Queue a prompt, wait for it; (execution seconds from /history, its outputs)."""
    prompt_id = http(f"{base}/prompt", {"prompt": graph})["prompt_id"]
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        entry = http(f"{base}/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None:
            messages = dict((name, data) for name, data in entry["status"].get("messages", []))
            if "execution_success" not in messages:
                raise SystemExit(f"prompt failed: {messages}\n{log_path.read_text()[-4000:]}")
            seconds = (messages["execution_success"]["timestamp"] - messages["execution_start"]["timestamp"]) / 1000
            return seconds, entry["outputs"]
        time.sleep(0.5)
    raise SystemExit(f"prompt did not finish within {timeout_s:.0f} s:\n{log_path.read_text()[-4000:]}")


def saved_latent(work: Path, outputs: dict) -> torch.Tensor:
    from safetensors.torch import load_file

    (info,) = outputs["7"]["latents"]
    return load_file(str(work / "out" / info["subfolder"] / info["filename"]))["latent_tensor"].float()


def measure(args, base: str, work: Path, log_path: Path, gpus: str, tag: str) -> tuple[float, torch.Tensor]:
    run_prompt(base, prompt(args, gpus, 1, f"{tag}_warm", warm=True), args.timeout, log_path)
    seconds, outputs = run_prompt(base, prompt(args, gpus, args.steps, tag), args.timeout, log_path)
    http(f"{base}/free", {"unload_models": True, "free_memory": True})
    return seconds, saved_latent(work, outputs)


def wait_for_log(log_path: Path, text: str, timeout_s: float) -> bool:
    """ComfyUI handles /free when its prompt loop next wakes (within its gc interval): wait for the line."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if text in log_path.read_text():
            return True
        time.sleep(0.5)
    return False


def main() -> int:
    args = parse_args()
    if not args.smoke and torch.cuda.device_count() < 2:
        print(f"ERROR: needs 2 CUDA GPUs, found {torch.cuda.device_count()} (use --smoke on a CPU).")
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="wan_mgpu_comfy_"))
    if not (work / "models" / "diffusion_models" / DIT).is_file():
        write_models(work / "models", args)
    link = Path(args.comfyui) / "custom_nodes" / LINK_NAME
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    process = None
    try:
        process, base, log_path = start_comfyui(args, work)
        single_s, single = measure(args, base, work, log_path, "", "one_gpu")
        multi_s, multi = measure(args, base, work, log_path, args.gpus, "multi_gpu")
        stopped = wait_for_log(log_path, "GPU workers stopped", 60.0)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        if link.is_symlink():
            link.unlink()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    err = float((multi.double() - single.double()).norm() / single.double().norm())
    n = len(args.gpus.split(","))
    print(f"\nComfyUI, Wan Sampler, {args.steps} steps, cfg 5, {args.frames}x{args.size}; torch {torch.__version__}")
    print("\n| run | GPUs | sampler prompt time (s) | speedup | rel err vs 1 GPU |")
    print("|---|---|---|---|---|")
    print(f"| Model Loader gpus '' | 1 | {single_s:.2f} | 1.00x | - |")
    print(f"| Model Loader gpus '{args.gpus}' | {n} | {multi_s:.2f} | {single_s / multi_s:.2f}x | {err:.2e} |")
    print(f"\nspeedup target >= {TARGET_SPEEDUP}x: {'MET' if single_s / multi_s >= TARGET_SPEEDUP else 'NOT MET'}; "
          f"workers stopped on /free: {'yes' if stopped else 'NO'}")  # fmt: skip
    return 0 if err <= args.max_rel_err and stopped else 1


if __name__ == "__main__":
    sys.exit(main())
