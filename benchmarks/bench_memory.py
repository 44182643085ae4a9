"""Our models under ComfyUI's memory manager, one GPU capped at 24 GiB, in a real ComfyUI server (issue 12).

    python3 benchmarks/bench_memory.py --comfyui /path/to/ComfyUI            # H200: 14B, ~6-7 minutes
    python3 benchmarks/bench_memory.py --comfyui /path/to/ComfyUI --smoke    # tiny models, CPU, checks the script

Writes random-weight checkpoints in ComfyUI's file layout (Wan2.1 T2V 14B bf16, which is also
the Wan2.2 T2V-A14B high-noise expert's layout; a Wan2.2 T2V-A14B low-noise expert as
fp8_scaled; a 4096-wide one-layer umT5; a tiny VAE used only for the latent's shape), links
this pack into ComfyUI's custom_nodes with a bench-only helper pack (a zero CONDITIONING
for the native sampler; the 24 GiB cap applied at import through
``torch.cuda.set_per_process_memory_fraction``), and runs two servers (``--disable-cuda-malloc``,
so the cap is the caching allocator's hard limit):

1. uncapped: Wan2.1 14B 1280x720x81, 2 steps, CFG 5: the reference step time;
2. capped (the fraction, plus ``--reserve-vram`` = total - 24 GiB so ComfyUI's manager sees
   the same limit):
   A. the same run with block_swap 0: the manager grants less than the 14B needs and our
      patcher streams blocks; step time vs the uncapped run;
   B. the Wan2.2 A14B pair at 832x480x81, 2 steps (high-noise step, then low-noise step);
   C. a native UNETLoader + KSampler on the 14B file (832x480x5, 1 step): it evicts ours;
   D. ours again (832x480x5, 1 step): it evicts the native model.

Step times come from the sampler's log line (per step; the last step is the clean one),
streamed blocks from the patcher's log line, GPU peaks and what the manager holds from
``/wan_core/memory``. Prints a table and exits non-zero when a check fails.

Needs, besides this repository: ``torch``, ``numpy``, ``safetensors`` and ``sentencepiece`` (the umT5
file embeds a tokenizer) in this Python;
ComfyUI's Python (``--python``, default this one) needs ComfyUI's requirements and this
pack's requirements.txt.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import comfy_server  # noqa: E402  (benchmarks/ is on the path from here on)
from comfy_server import ComfyServer, http, packs_linked, sampler_runs, save_tensors, umt5_tensors, wan_t2v_graph  # noqa: E402

LINK_NAME, HELPERS_NAME = "comfyui-wan-core-bench", "wan-memory-bench-helpers"
HIGH, LOW = "wan2.1_t2v_14B_bf16.safetensors", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
TE, VAE, NATIVE_SMOKE = "bench_umt5.safetensors", "wan_2.1_vae.safetensors", "native_t2v.safetensors"
GIB = 2**30
STEP_RATIO_LIMIT = 1.3

# The bench-only helper pack: the process cap at import, and a zero text conditioning for the native sampler.
HELPERS_SOURCE = """
import os
import torch

_cap = os.environ.get("WAN_BENCH_CAP_GIB")
if _cap and torch.cuda.is_available():
    _total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, float(_cap) * 2**30 / _total), 0)
    print(f"wan memory bench: process capped at {float(_cap):.1f} GiB of {_total / 2**30:.1f} GiB", flush=True)


class BenchZeroConditioning:
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "bench"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"tokens": ("INT", {"default": 512, "min": 1, "max": 512})}}

    def make(self, tokens):
        return ([[torch.zeros(1, tokens, 4096), {}]],)


NODE_CLASS_MAPPINGS = {"BenchZeroConditioning": BenchZeroConditioning}
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="ComfyUI checkout (or $COMFYUI_PATH)")
    p.add_argument("--python", default=os.environ.get("COMFYUI_PYTHON") or sys.executable, help="ComfyUI's Python")
    p.add_argument("--cap-gib", type=float, default=24.0, help="the capped server's GPU memory")
    p.add_argument("--work", help="folder for models/outputs (kept; default: a temporary folder, removed after)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds one prompt may take")
    p.add_argument("--smoke", action="store_true", help="tiny models on the CPU, no cap: checks the script")
    args = p.parse_args()
    if not args.comfyui or not (Path(args.comfyui) / "main.py").is_file():
        p.error("--comfyui (or $COMFYUI_PATH) must name a ComfyUI checkout")
    return args


@dataclass(frozen=True)
class Sizes:
    """(width, height, frames, steps) of each case."""

    big: tuple[int, int, int, int] = (1280, 720, 81, 2)
    pair: tuple[int, int, int, int] = (832, 480, 81, 2)
    small: tuple[int, int, int, int] = (832, 480, 5, 1)


SMOKE_SIZES = Sizes(big=(64, 48, 9, 2), pair=(48, 32, 5, 2), small=(32, 32, 5, 1))


# ---------------------------------------------------------------------------------- model files


def write_models(models: Path, smoke: bool) -> None:
    from wan_core.tiny_build import write_tiny_models

    write_tiny_models(models, names=(VAE,), overwrite=False)
    if smoke:
        write_tiny_models(models, names=(HIGH, LOW), overwrite=False)
        save_tensors(models / "text_encoders" / TE, umt5_tensors(None))
        save_tensors(models / "diffusion_models" / NATIVE_SMOKE, _native_smoke_dit())
        return
    started = time.perf_counter()
    for name, seed, fp8 in ((HIGH, 0, False), (LOW, 1, True)):
        if not (models / "diffusion_models" / name).is_file():
            save_tensors(models / "diffusion_models" / name, _dit_14b(seed, fp8))
    if not (models / "text_encoders" / TE).is_file():
        save_tensors(models / "text_encoders" / TE, umt5_tensors(4096))
    print(f"model files ready in {time.perf_counter() - started:.0f} s", flush=True)


def _dit_14b(seed: int, fp8: bool) -> dict[str, torch.Tensor]:
    """Released Wan2.1 T2V 14B shapes, random, in ComfyUI's layout (bf16, or fp8_scaled block Linears)."""
    from bench_dit import random_weights

    from wan_core.dit.config import released_config
    from wan_core.tiny_build import comfyui_dit_tensors

    sd = random_weights(released_config("wan2.1-t2v-14b"), torch.device("cuda"), seed)
    out = {k: v.cpu() for k, v in comfyui_dit_tensors(sd, fp8_scaled=fp8).items()}
    del sd
    torch.cuda.empty_cache()
    return out


def _native_smoke_dit() -> dict[str, torch.Tensor]:
    """A tiny DiT ComfyUI's own loader accepts: it assumes 4096-wide text embeddings."""
    import dataclasses

    from wan_core.dit.tiny import tiny_dit_state_dict
    from wan_core.tiny_build import DIT_PREFIX
    from wan_core.tiny_models import TINY

    sd = tiny_dit_state_dict("wan2.1-t2v", seed=4, sizes=dataclasses.replace(TINY, text_dim=4096, dit_layers=1))
    return {DIT_PREFIX + k: v for k, v in sd.items()}


# ---------------------------------------------------------------------------------- servers


def make_server(args: argparse.Namespace, work: Path, capped: bool) -> ComfyServer:
    """This pack and the helper pack; capped: the helper's process cap plus ``--reserve-vram`` = total - cap."""
    extra, env = ["--disable-cuda-malloc"], {}
    if args.smoke:
        extra, env = extra + ["--cpu"], {"OMP_NUM_THREADS": "1"}
    elif capped:
        total = torch.cuda.get_device_properties(0).total_memory / GIB
        extra += ["--reserve-vram", f"{total - args.cap_gib:.2f}"]
        env["WAN_BENCH_CAP_GIB"] = str(args.cap_gib)
    log_path = work / f"comfyui_{'capped' if capped else 'uncapped'}.log"
    return ComfyServer(Path(args.comfyui), args.python, work, (LINK_NAME, HELPERS_NAME), log_path, extra, env)


def memory(server: ComfyServer, reset_peak: bool = False) -> dict:
    """The pack's /wan_core/memory report (GPU peak, what ComfyUI's manager holds)."""
    return http(f"{server.base}/wan_core/memory" + ("?reset_peak=1" if reset_peak else ""))


def prepare_work(work: Path) -> None:
    comfy_server.prepare_work(work)
    (work / HELPERS_NAME).mkdir(parents=True, exist_ok=True)
    (work / HELPERS_NAME / "__init__.py").write_text(HELPERS_SOURCE)


# ---------------------------------------------------------------------------------- prompts


def ours(size: tuple[int, int, int, int], tag: str, low: str = "none", seed: int = 7) -> dict:
    width, height, frames, steps = size
    files = {"model": HIGH, "low_noise_model": low, "text_encoder": TE, "vae": VAE}
    return wan_t2v_graph(files, (width, height, frames), steps, tag, seed=seed)


def native(size: tuple[int, int, int, int], unet: str, tag: str) -> dict:
    width, height, frames, steps = size
    sampler = {"seed": 3, "steps": steps, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}
    nodes = {
        "1": ("UNETLoader", {"unet_name": unet, "weight_dtype": "default"}),
        "2": ("BenchZeroConditioning", {"tokens": 512}),
        "3": ("EmptyHunyuanLatentVideo", {"width": width, "height": height, "length": frames, "batch_size": 1}),
        "4": (
            "KSampler",
            {"model": ["1", 0], "positive": ["2", 0], "negative": ["2", 0], "latent_image": ["3", 0], **sampler},
        ),
        "5": ("SaveLatent", {"samples": ["4", 0], "filename_prefix": f"bench/{tag}"}),
    }
    return {key: {"class_type": cls, "inputs": inputs} for key, (cls, inputs) in nodes.items()}


# ---------------------------------------------------------------------------------- one case


@dataclass
class Case:
    name: str
    ok: bool = False
    error: str = ""
    seconds: float = 0.0
    steps: list[float] = field(default_factory=list)
    streamed: str = "-"
    peak_gib: float | None = None
    ours_gib: float = 0.0  # what ComfyUI's manager holds of ours after the case
    native_gib: float = 0.0  # ... and of native models


def run_case(server: ComfyServer, name: str, graph: dict, timeout_s: float) -> Case:
    case = Case(name)
    memory(server, reset_peak=True)
    offset = len(server.log_text())
    started = time.time()
    _, case.error = server.wait(server.queue(graph), timeout_s)
    case.ok = not case.error
    case.seconds = time.time() - started
    log = server.log_text()[offset:]
    runs = sampler_runs(log)
    case.steps = runs[-1][1] if runs else []
    streamed = re.findall(r"streaming (\d+) of (\d+) blocks", log)
    case.streamed = ", ".join(sorted({f"{a}/{b}" for a, b in streamed})) or "0"
    report = memory(server)
    if "cuda" in report:
        case.peak_gib = report["cuda"]["max_allocated"] / GIB
    for model in report["loaded_models"]:
        if model["ours"]:
            case.ours_gib += model["loaded"] / GIB
        else:
            case.native_gib += model["loaded"] / GIB
    print(f"  {name}: {'ok' if case.ok else 'FAILED ' + case.error[:200]} in {case.seconds:.0f} s", flush=True)
    return case


# ---------------------------------------------------------------------------------- main


def run_all(args: argparse.Namespace, work: Path) -> list[Case]:
    sizes = SMOKE_SIZES if args.smoke else Sizes()
    unet = NATIVE_SMOKE if args.smoke else HIGH
    cap = "CPU" if args.smoke else f"{args.cap_gib:.0f} GiB"

    def label(what: str, size: tuple[int, int, int, int], where: str) -> str:
        return f"{what} {size[0]}x{size[1]}x{size[2]}, {size[3]} step(s), {where}"

    uncapped = make_server(args, work, capped=False)
    try:
        uncapped.start()
        cases = [run_case(uncapped, label("14B", sizes.big, "uncapped"), ours(sizes.big, "uncapped"), args.timeout)]
    finally:
        uncapped.stop()
    capped = make_server(args, work, capped=True)
    try:
        capped.start()
        if not args.smoke and "process capped at" not in capped.log_text():
            raise SystemExit(f"the helper pack did not cap the server:\n{capped.log_text()[-4000:]}")
        runs = [
            (label("14B", sizes.big, cap), ours(sizes.big, "capped")),
            (label("A14B pair", sizes.pair, cap), ours(sizes.pair, "pair", LOW)),
            (label("native UNETLoader+KSampler", sizes.small, cap), native(sizes.small, unet, "native")),
            (label("ours again", sizes.small, cap), ours(sizes.small, "again", seed=8)),
        ]
        cases += [run_case(capped, name, graph, args.timeout) for name, graph in runs]
    finally:
        capped.stop()
    return cases


def checks(args: argparse.Namespace, cases: list[Case]) -> list[tuple[str, bool]]:
    uncapped, capped, pair, native_case, again = cases
    out = [("every prompt finished", all(c.ok for c in cases))]
    if args.smoke:
        return out
    ratio = capped.steps[-1] / uncapped.steps[-1] if capped.steps and uncapped.steps else float("inf")
    out.append((f"capped 14B step time <= {STEP_RATIO_LIMIT}x uncapped ({ratio:.2f}x)", ratio <= STEP_RATIO_LIMIT))
    out.append(("the capped 14B streamed blocks (no manual block_swap)", capped.streamed not in ("-", "0")))
    peaks = [c.peak_gib or 0.0 for c in cases[1:]]
    out.append((f"capped peaks <= {args.cap_gib:.0f} GiB ({max(peaks):.1f})", max(peaks) <= args.cap_gib))
    out.append(("the native model evicted ours", native_case.ours_gib < pair.ours_gib))
    out.append(("ours evicted the native model", again.native_gib < native_case.native_gib))
    return out


def print_table(args: argparse.Namespace, cases: list[Case], results: list[tuple[str, bool]]) -> None:
    device = "CPU (smoke)" if args.smoke else torch.cuda.get_device_name(0)
    print(f"\nComfyUI memory manager, Wan Core models; {device}; torch {torch.__version__}")
    print("\n| case | result | prompt s | step times (s) | streamed blocks | GPU peak GiB | ours / native held GiB |")
    print("|---|---|---|---|---|---|---|")
    for c in cases:
        peak = f"{c.peak_gib:.1f}" if c.peak_gib is not None else "-"
        steps = ", ".join(f"{t:.2f}" for t in c.steps) or "-"
        result = "ok" if c.ok else f"FAILED: {c.error[:80]}"
        held = f"{c.ours_gib:.1f} / {c.native_gib:.1f}"
        print(f"| {c.name} | {result} | {c.seconds:.0f} | {steps} | {c.streamed} | {peak} | {held} |")
    print()
    for text, ok in results:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")


def main() -> int:
    args = parse_args()
    if not args.smoke and not torch.cuda.is_available():
        print("ERROR: needs a CUDA GPU (use --smoke on a CPU).")
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="wan_memory_bench_"))
    write_models(work / "models", args.smoke)
    prepare_work(work)
    try:
        with packs_linked(Path(args.comfyui), {LINK_NAME: ROOT, HELPERS_NAME: work / HELPERS_NAME}):
            cases = run_all(args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    results = checks(args, cases)
    print_table(args, cases, results)
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
