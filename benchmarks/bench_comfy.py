"""Ours vs ComfyUI's native Wan, in one process that has imported ComfyUI and run its attention.

    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_comfy.py            # GPU: the full table
    COMFYUI_PATH=/path/to/ComfyUI python benchmarks/bench_comfy.py --smoke    # CPU, tiny sizes

Why here and not in a bare process: ComfyUI runs SDPA inside
``sdpa_kernel([...], set_priority=True)``, which changes what a plain SDPA call picks for
the rest of the process. Users run our nodes in that process, so we measure there: the
native model runs first, then ours, on the same random weights (shared tensors).

Sections: DiT forwards (ComfyUI's ``comfy.ldm.wan.model.WanModel``; diffusers as a second
peer when installed), VAE decodes (``comfy.ldm.wan.vae`` / ``vae2_2``), and our Sampler
node driven through its node class. Prints seconds, the ratio ours/native (below 1 =
faster), the output's rel err against native and the peak memory of each call (GiB
allocated above what was allocated before it); a short table last. Skips with the
reason when ComfyUI is not found.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from comfy_peer import find_comfyui, import_comfyui, native_dit, native_vae, random_vae_weights  # noqa: E402
from timing import measure, rel  # noqa: E402

SIZES = {"1.3b": ("wan2.1-t2v-1.3b", 81, 832, 480), "14b": ("wan2.1-t2v-14b", 81, 1280, 720)}
VAE_SIZES = {"2.1": (81, 832, 480), "2.2": (121, 1280, 704)}
Row = tuple[str, float, float, float, float, float]  # what, native s, ours s, rel err, native GiB, ours GiB


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfyui", help="ComfyUI checkout (default: $COMFYUI_PATH)")
    p.add_argument("--smoke", action="store_true", help="tiny models and sizes; runs on the CPU")
    p.add_argument("--dit", default="1.3b,14b", help="DiT presets to run (comma list; '' for none)")
    p.add_argument("--vae", default="2.1,2.2", help="VAE versions to run (comma list; '' for none)")
    p.add_argument("--eight-bit", default="14b", help="presets that also run the opt-in 8-bit path")
    p.add_argument("--eager", default="1.3b", help="presets that also run ours without the fused kernels")
    p.add_argument("--diffusers", default="1.3b", help="presets that also run diffusers (when installed)")
    p.add_argument("--profile", default="", help="presets whose exact forward is also profiled (top CUDA kernels)")
    p.add_argument("--sampler-steps", type=int, default=4, help="steps of the Sampler node run (0: skip)")
    p.add_argument("--attention", default="auto", help="our attention backend")
    p.add_argument("--also-attention", default="sdpa", help="extra exact rows of ours with these backends (comma list)")
    p.add_argument(
        "--eight-bit-attention", default="", help="attention backends of the 8-bit rows (default: --attention)"
    )
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def _set(text: str) -> set[str]:
    return {part.strip() for part in text.split(",") if part.strip()}


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def show(what: str, t, native=None, err: float | None = None) -> None:
    ratio = f", ours/native {t.seconds / native.seconds:.3f}" if native is not None else ""
    e = f", rel err vs native {err:.2e}" if err is not None else ""
    print(f"  {what:<34s} {t.seconds:8.3f} s, peak {t.peak_gib:6.2f} GiB{ratio}{e}", flush=True)


# ------------------------------------------------------------------------------------------ DiT


def dit_config(preset: str, smoke: bool):
    from wan_core.dit.config import released_config
    from wan_core.dit.tiny import tiny_dit_config

    if smoke:
        return tiny_dit_config("wan2.1-t2v"), 5, 64, 64
    variant, frames, width, height = SIZES[preset]
    return released_config(variant), frames, width, height


def dit_inputs(config, frames: int, width: int, height: int, device: torch.device, seed: int):
    """Latent x [1, 16, T, h, w] fp32, timestep [1], text context [1, 512, text_dim] bf16."""
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    t, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
    x = torch.randn(1, config.out_dim, t, h, w, generator=gen, device=device)
    context = torch.randn(1, config.text_len, config.text_dim, generator=gen, device=device).to(torch.bfloat16)
    return x, torch.tensor([700.0], device=device), context


def attention_probe(device: torch.device) -> str:
    """Which SDPA implementation a plain call and ours get now (after ComfyUI's attention ran)."""
    from torch.profiler import profile

    from wan_core.dit.attention import attention

    q, k, v = (torch.randn(1, 1024, 4, 128, device=device, dtype=torch.bfloat16) for _ in range(3))

    def ops(fn) -> str:
        with profile() as prof:
            fn()
            _sync()
        names = {e.name for e in prof.events() if e.name.startswith("aten::_scaled_dot_product")}
        return ",".join(sorted(n.removeprefix("aten::_scaled_dot_product_") for n in names))

    plain = ops(lambda: torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))))
    return f"plain SDPA -> {plain}; ours -> {ops(lambda: attention(q, k, v, 'sdpa'))}"


def bench_dit(comfy: dict, preset: str, args, device: torch.device) -> list[Row]:
    from bench_dit import random_weights

    import wan_core

    config, frames, width, height = dit_config(preset, args.smoke)
    tokens = ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)
    print(f"DiT {config.variant} {frames}x{height}x{width} ({tokens} tokens)", flush=True)
    weights = random_weights(config, device, args.seed)
    x, t, context = dit_inputs(config, frames, width, height, device, args.seed)
    runs, rows = args.runs, []
    native = native_dit(comfy, config, weights)
    n = measure(lambda: native(x.to(torch.bfloat16), t, context), runs)
    show(f"ComfyUI native ({comfy['attention']})", n)
    if device.type == "cuda":
        print(f"  attention after ComfyUI's ran: {attention_probe(device)}", flush=True)
    ours = wan_core.load_dit(weights, device=device, attention=args.attention)
    for backend in sorted(b for b in _set(args.also_attention) if _differs(b, args.attention, x)):
        ours.set_attention(backend)
        a = measure(lambda: ours(x, t, context), runs)
        show(f"ours exact ({kernel_name(backend, x)})", a, n, rel(a.out, n.out))
        rows.append((f"DiT {preset} exact, {backend}", n.seconds, a.seconds, rel(a.out, n.out), n.peak_gib, a.peak_gib))
    ours.set_attention(args.attention)
    o = measure(lambda: ours(x, t, context), runs)
    show(f"ours exact ({kernel_name(args.attention, x)})", o, n, rel(o.out, n.out))
    rows.append((f"DiT {preset} exact", n.seconds, o.seconds, rel(o.out, n.out), n.peak_gib, o.peak_gib))
    if preset in _set(args.profile) and device.type == "cuda":
        profile_forward(lambda: ours(x, t, context))
    if preset in _set(args.eager):
        os.environ["WAN_CORE_NO_TRITON"] = "1"
        try:
            e = measure(lambda: ours(x, t, context), runs)
        finally:
            del os.environ["WAN_CORE_NO_TRITON"]
        show("ours without fused kernels", e, n, rel(e.out, n.out))
    if preset in _set(args.eight_bit):
        del ours
        for backend in sorted(_set(args.eight_bit_attention) or {args.attention}):
            rows.append(bench_eight_bit(weights, (x, t, context), o, n, args, device, preset, backend))
    if preset in _set(args.diffusers):
        bench_diffusers(config, weights, x, t, context, n, runs, device)
    return rows


def profile_forward(fn) -> None:
    """Print the CUDA kernels of one call, grouped, by total device time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        _sync()
    print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=18, max_name_column_width=70))


def bench_eight_bit(weights, inputs, exact, native, args, device, preset: str, attention: str) -> Row:
    import wan_core
    from wan_core.errors import BackendUnavailableError

    try:
        q8 = wan_core.load_dit(weights, device=device, attention=attention, fast_8bit=True)
        q = measure(lambda: q8(*inputs), args.runs)
    except BackendUnavailableError as exc:
        print(f"  8-bit path ({attention}) SKIPPED: {exc}", flush=True)
        return (
            f"DiT {preset} 8-bit, {attention} (skipped)",
            native.seconds,
            float("nan"),
            float("nan"),
            native.peak_gib,
            0.0,
        )
    err = rel(q.out, exact.out)
    show(f"ours 8-bit (fp8 GEMMs, {kernel_name(q8.effective_attention, inputs[0])})", q, native, rel(q.out, native.out))
    print(f"  8-bit rel err vs ours exact bf16: {err:.2e}", flush=True)
    return (
        f"DiT {preset} 8-bit, {attention} (err vs exact)",
        native.seconds,
        q.seconds,
        err,
        native.peak_gib,
        q.peak_gib,
    )


def _differs(backend: str, other: str, x: torch.Tensor) -> bool:
    """Whether two backends run different kernels on x's device (CPU: auto is sdpa, no extra row)."""
    from wan_core.dit.attention import resolved

    return resolved(backend, x.device) != resolved(other, x.device)


def kernel_name(backend: str, x: torch.Tensor) -> str:
    """``backend`` and, for auto, the kernel it resolves to on x's device."""
    from wan_core.dit.attention import resolved

    name = resolved(backend, x.device)
    return backend if name == backend else f"{backend}: {name}"


def bench_diffusers(config, weights, x, t, context, native, runs: int, device: torch.device) -> None:
    try:
        from bench_dit import build_diffusers
    except ImportError as exc:
        print(f"  diffusers SKIPPED: {exc}", flush=True)
        return
    try:
        model = build_diffusers(config, weights, device)
    except ImportError as exc:
        print(f"  diffusers SKIPPED: not installed here ({exc})", flush=True)
        return
    xb = x.to(torch.bfloat16)
    with torch.no_grad():
        d = measure(lambda: model(xb, t, context, return_dict=False)[0], runs)
    show("diffusers WanTransformer3DModel", d, native, rel(d.out, native.out))


# ------------------------------------------------------------------------------------------ VAE


def vae_config(version: str, smoke: bool):
    from wan_core.vae.config import VAEConfig
    from wan_core.vae.tiny import tiny_vae_config

    if smoke:
        return tiny_vae_config(version), (9, 64, 64)
    config = VAEConfig("2.2", 48, 160, 256, patch_size=2) if version == "2.2" else VAEConfig("2.1", 16, 96, 96)
    return config, VAE_SIZES[version]


def bench_vae(comfy: dict, version: str, args, device: torch.device) -> Row:
    import wan_core

    config, (frames, width, height) = vae_config(version, args.smoke)
    s = config.spatial_stride
    print(f"VAE {version} decode {(frames - 1) // 4 + 1} latent frames -> {frames}x{height}x{width}", flush=True)
    dtype = torch.bfloat16
    native = native_vae(comfy, config)
    weights = random_vae_weights(native, device, dtype, args.seed)
    native.load_state_dict(weights, strict=True, assign=True)
    native.eval().requires_grad_(False)
    ours = wan_core.load_vae(weights, device=device, dtype=dtype)
    gen = torch.Generator(device=device).manual_seed(args.seed + 2)
    z = torch.randn(1, config.z_dim, (frames - 1) // 4 + 1, height // s, width // s, generator=gen, device=device)
    raw = ours.denormalize(z).to(dtype)  # ComfyUI's LATENT is the raw VAE mean
    with torch.no_grad():
        n = measure(lambda: native.decode(raw), args.runs)
        o = measure(lambda: ours.decode(z), args.runs)
    err = rel(o.out, n.out.float().clamp(-1, 1))
    show("ComfyUI native", n)
    show("ours", o, n, err)
    return (f"VAE {version} decode {frames}x{height}x{width}", n.seconds, o.seconds, err, n.peak_gib, o.peak_gib)


# -------------------------------------------------------------------------------------- Sampler


def load_pack():
    """Import this repository the way ComfyUI imports a custom node pack (a package from its folder)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "wan_core_pack", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    pack = importlib.util.module_from_spec(spec)
    sys.modules["wan_core_pack"] = pack
    spec.loader.exec_module(pack)
    return pack


def bench_sampler(args, device: torch.device) -> None:
    """Our Sampler node through its class: total time against steps x 2 (cfg) forwards of the same model."""
    from bench_dit import random_weights

    import wan_core

    load_pack()
    from wan_core_pack.nodes.latents import WanEmptyVideoLatent
    from wan_core_pack.nodes.sampling import WanSampler
    from wan_core_pack.nodes.types import TextEmbeds, WanModelHandle

    config, frames, width, height = dit_config("1.3b", args.smoke)
    vae_cfg, _ = vae_config("2.1", args.smoke)
    model = wan_core.load_dit(random_weights(config, device, args.seed), device=device, attention=args.attention)
    cond = WanEmptyVideoLatent().build(type("V", (), {"config": vae_cfg})(), width, height, frames)[0]
    embeds = TextEmbeds(positive=[torch.randn(80, config.text_dim)], negative=[torch.randn(40, config.text_dim)])
    steps = args.sampler_steps
    x, t, context = dit_inputs(config, frames, width, height, device, args.seed)
    forward = measure(lambda: model(x, t, context), args.runs)
    node, handle = WanSampler(), WanModelHandle(high=model)

    def run():
        out = node.run(handle, embeds, cond, 0, steps, 5.0, -1.0, 5.0, "unipc", 1.0, 0.0, 1)
        return out["result"][0]["samples"]  # the node also returns UI data (the DiT-steps marks)

    run()  # warm-up
    _sync()
    t0 = time.perf_counter()
    latent = run()
    _sync()
    total = time.perf_counter() - t0
    expected = 2 * steps * forward.seconds
    print(
        f"Sampler node (1.3B, {steps} steps, cfg 5): {total:.3f} s; 2 x {steps} forwards {expected:.3f} s; "
        f"overhead {100 * (total / expected - 1):+.1f} %; latent {tuple(latent.shape)}",
        flush=True,
    )


# ----------------------------------------------------------------------------------------- main


def main() -> int:
    args = parse_args()
    path = find_comfyui(args.comfyui)
    if path is None:
        print("SKIP: ComfyUI not found; pass --comfyui PATH or set COMFYUI_PATH to a ComfyUI checkout.")
        return 0
    if not torch.cuda.is_available() and not args.smoke:
        print("SKIP: no CUDA GPU here; run with --smoke for the tiny CPU check.")
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    comfy = import_comfyui(path, cpu=device.type == "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"ComfyUI at {path} (attention: {comfy['attention']}); torch {torch.__version__}; {name}", flush=True)
    rows: list[Row] = []
    failed = 0
    presets = [p for p in SIZES if p in _set(args.dit)]
    sections = [(f"DiT {p}", lambda p=p: rows.extend(bench_dit(comfy, p, args, device))) for p in presets]
    sections += [
        (f"VAE {v}", lambda v=v: rows.append(bench_vae(comfy, v, args, device))) for v in sorted(_set(args.vae))
    ]
    if args.sampler_steps:
        sections.append(("Sampler node", lambda: bench_sampler(args, device)))
    for name, run in sections[:1] + sections[len(presets) :] if args.smoke else sections:
        try:  # one failing section must not hide the others' numbers
            run()
        except Exception:
            failed += 1
            print(f"SECTION FAILED: {name}\n{traceback.format_exc()}", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print_table(rows)
    return 1 if failed else 0


def print_table(rows: list[Row]) -> None:
    print("\n| call | ComfyUI native | ours | ours/native | rel err | peak native / ours (GiB) |")
    print("|---|---|---|---|---|---|")
    for what, n, o, err, pn, po in rows:
        print(f"| {what} | {n:.3f} s | {o:.3f} s | {o / n:.3f} | {err:.1e} | {pn:.2f} / {po:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
