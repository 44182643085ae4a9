"""Benchmark our Wan DiT against diffusers' WanTransformer3DModel on the same random weights.

    python benchmarks/bench_dit.py --preset 1.3b --frames 81 --size 832x480
    python benchmarks/bench_dit.py --preset 14b --size 1280x720

Random bf16 weights are created directly on the GPU (official names), loaded into our
model with ``wan_core.load_dit`` (no copy: same device and dtype) and into a diffusers
model built on the meta device via our name converter (``load_state_dict(assign=True)``,
so both models share the same weight tensors). diffusers gets what
``from_pretrained(torch_dtype=bf16)`` would give it: its ``_keep_in_fp32_modules``
(time embedder, scale-shift tables, affine norms, RoPE tables) in fp32, the rest bf16.

Prints the relative error between the two outputs, the median forward time (CUDA
events, after warm-up), peak memory, and the ratio ours/diffusers. Exits non-zero when
the outputs disagree (rel err > --max-rel-err).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import rel, time_cuda  # noqa: E402

from wan_core.dit.config import DiTConfig, released_config  # noqa: E402
from wan_core.dit.convert import official_to_diffusers  # noqa: E402
from wan_core.dit.model import WanDiT  # noqa: E402

PRESETS = {"1.3b": "wan2.1-t2v-1.3b", "14b": "wan2.1-t2v-14b", "5b": "wan2.2-ti2v-5b"}
FP32_SUFFIXES = ("modulation", "norm3.weight", "norm3.bias", "norm_q.weight", "norm_k.weight")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="1.3b")
    p.add_argument("--frames", type=int, default=81, help="pixel frames (4n+1)")
    p.add_argument("--size", default="832x480", help="WIDTHxHEIGHT in pixels")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--attention", default="sdpa", help="our backend: sdpa (same kernel as diffusers), auto, ...")
    p.add_argument("--text-tokens", type=int, default=512)
    p.add_argument("--skip-diffusers", action="store_true")
    p.add_argument("--fp8", action="store_true", help="also time fp8 (e4m3) weights, dequantised per layer")
    p.add_argument("--skip-eager", action="store_true", help="do not also time ours without the fused kernels")
    p.add_argument("--compile", action="store_true", help="also time ours with torch.compile'd blocks")
    p.add_argument("--block-swap", type=int, default=0, help="also time ours with N blocks swapped from CPU")
    p.add_argument(
        "--max-rel-err", type=float, default=5e-2, help="ours vs diffusers (both bf16) when no fp32 reference is run"
    )
    p.add_argument(
        "--fp32-reference",
        choices=("auto", "yes", "no"),
        default="auto",
        help="also run diffusers in fp32 and compare both bf16 outputs with it (auto: not for 14b)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def latent_shape(config: DiTConfig, frames: int, width: int, height: int) -> tuple[int, int, int, int]:
    stride = 16 if config.out_dim == 48 else 8  # Wan2.2 VAE 4x16x16, Wan2.1 VAE 4x8x8
    if (frames - 1) % 4 or width % (2 * stride) or height % (2 * stride):
        raise SystemExit(f"frames must be 4n+1 and the size a multiple of {2 * stride}; got {frames}, {width}x{height}")
    return config.out_dim, (frames - 1) // 4 + 1, height // stride, width // stride


def random_weights(config: DiTConfig, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    """Official-name random weights created on ``device``: bf16, fp32 for norms/modulation."""
    gen = torch.Generator(device=device).manual_seed(seed)
    shapes = WanDiT(config, device="meta").state_dict()
    out = {}
    for name, meta in shapes.items():
        fp32 = name.endswith(FP32_SUFFIXES) or name.endswith("emb_pos")
        t = torch.randn(meta.shape, generator=gen, device=device, dtype=torch.float32 if fp32 else torch.bfloat16)
        if name.endswith("modulation"):
            t.mul_(0.1)
        elif meta.ndim == 1:
            t.mul_(0.05).add_(1.0 if "norm" in name else 0.0)
        else:
            t.mul_(1.0 / math.sqrt(math.prod(meta.shape[1:])))
        out[name] = t
    return out


def build_diffusers(config: DiTConfig, weights: dict[str, torch.Tensor], device: torch.device, fp32: bool = False):
    from diffusers import WanTransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    kwargs = dict(
        patch_size=config.patch_size,
        num_attention_heads=config.num_heads,
        attention_head_dim=config.head_dim,
        in_channels=config.in_dim,
        out_channels=config.out_dim,
        text_dim=config.text_dim,
        freq_dim=config.freq_dim,
        ffn_dim=config.ffn_dim,
        num_layers=config.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=config.eps,
    )
    with torch.device("meta"):
        model = WanTransformer3DModel(**kwargs)
    dsd = official_to_diffusers(weights)
    for name, t in dsd.items():  # diffusers' dtype layout after from_pretrained(torch_dtype=bf16)
        keep32 = (
            name.startswith("condition_embedder.time_embedder.") or "scale_shift_table" in name or ".norm2." in name
        )
        dsd[name] = t.float() if keep32 or fp32 else t.to(torch.bfloat16)
    model.load_state_dict(dsd, strict=True, assign=True)
    rope = WanRotaryPosEmbed(config.head_dim, config.patch_size, 1024)
    model.rope = rope.to(device=device, dtype=torch.float32)
    return model.eval().requires_grad_(False)


def main() -> int:
    args = parse_args()
    if not torch.cuda.is_available():
        print("ERROR: this benchmark needs a CUDA GPU.")
        return 2
    device = torch.device("cuda")
    config = released_config(PRESETS[args.preset])
    width, height = (int(v) for v in args.size.lower().split("x"))
    c, t, h, w = latent_shape(config, args.frames, width, height)
    tokens = t * (h // 2) * (w // 2)
    print(
        f"preset {config.variant}: dim {config.dim}, {config.num_layers} layers; video {args.frames}x{height}x{width}"
        f" -> latent [1, {c}, {t}, {h}, {w}] = {tokens} tokens; torch {torch.__version__}; "
        f"{torch.cuda.get_device_name(device)}"
    )
    t0 = time.time()
    weights = random_weights(config, device, args.seed)
    import wan_core

    ours = wan_core.load_dit(weights, device=device, attention=args.attention)
    print(f"weights ready in {time.time() - t0:.1f}s; ours: compute {ours.dtype}, attention {ours.attention_backend}")
    gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    x = torch.randn(1, c, t, h, w, generator=gen, device=device)
    context = torch.zeros(1, 512, config.text_dim, device=device, dtype=torch.bfloat16)
    context[:, : args.text_tokens] = torch.randn(1, args.text_tokens, config.text_dim, generator=gen, device=device)
    timestep = torch.tensor([700.0], device=device)
    ms_ours, mem_ours, out_ours = time_cuda(lambda: ours(x, timestep, context), args.runs, args.warmup)
    print(f"ours:      {ms_ours:9.1f} ms/forward (median of {args.runs}), peak {mem_ours:.2f} GiB")
    run_variants(args, ours, weights, x, timestep, context, ms_ours, out_ours)
    if args.skip_diffusers:
        return 0
    return compare_with_diffusers(args, config, weights, device, (x, timestep, context), out_ours, ms_ours, mem_ours)


def run_variants(args, ours, weights, x, timestep, context, ms_ours: float, out_ours) -> None:
    """The optional rows: without fused kernels, fp8 weights, block swap, torch.compile (each vs plain ours)."""
    import wan_core

    if not args.skip_eager:
        os.environ["WAN_CORE_NO_TRITON"] = "1"  # the same model without the fused Triton kernels
        ms_eager, _, out_eager = time_cuda(lambda: ours(x, timestep, context), args.runs, args.warmup)
        del os.environ["WAN_CORE_NO_TRITON"]
        err_f = float((out_ours.double() - out_eager.double()).norm() / out_eager.double().norm())
        print(
            f"ours, no fused kernels: {ms_eager:9.1f} ms/forward; fused/eager {ms_ours / ms_eager:.3f}, "
            f"rel err fused vs eager {err_f:.2e}"
        )
    if args.fp8:
        fp8 = wan_core.load_dit(weights, device=x.device, dtype=torch.float8_e4m3fn, attention=args.attention)
        fp8.set_compute_dtype(torch.bfloat16)
        ms_8, mem_8, out_8 = time_cuda(lambda: fp8(x, timestep, context), args.runs, args.warmup)
        print(
            f"ours fp8 weights (dequantised per layer): {ms_8:9.1f} ms/forward, x{ms_8 / ms_ours:.3f} of bf16, "
            f"peak {mem_8:.2f} GiB, rel err vs bf16 {rel(out_8, out_ours):.2e}"
        )
        del fp8
        torch.cuda.empty_cache()
    for prefetch in (True, False) if args.block_swap else ():
        ours.set_block_swap(args.block_swap, "cpu", prefetch=prefetch)
        ms_s, mem_s, out_s = time_cuda(lambda: ours(x, timestep, context), args.runs, args.warmup)
        ours.set_block_swap(0)
        print(
            f"ours+swap {args.block_swap} ({'prefetch' if prefetch else 'no prefetch'}): {ms_s:9.1f} ms/forward, "
            f"x{ms_s / ms_ours:.3f} of no swap, rel err vs no swap {rel(out_s, out_ours):.2e}"
        )
    if args.compile:
        ours.compile_blocks()
        ms_c, mem_c, out_c = time_cuda(lambda: ours(x, timestep, context), args.runs, max(args.warmup, 2))
        err_c = float((out_c.double() - out_ours.double()).norm() / out_ours.double().norm())
        print(f"ours+compile: {ms_c:9.1f} ms/forward, peak {mem_c:.2f} GiB, rel err vs eager {err_c:.2e}")


def compare_with_diffusers(args, config, weights, device, inputs, out_ours, ms_ours: float, mem_ours: float) -> int:
    """diffusers' WanTransformer3DModel on the same weights: the time ratio and the parity verdict (exit code)."""
    x, timestep, context = inputs
    _, t, h, w = x.shape[1:]
    tokens = t * (h // 2) * (w // 2)
    ref = build_diffusers(config, weights, device)
    xb = x.to(torch.bfloat16)

    def run_ref():
        with torch.no_grad():
            return ref(xb, timestep, context, return_dict=False)[0]

    ms_ref, mem_ref, out_ref = time_cuda(run_ref, args.runs, args.warmup)
    print(f"diffusers: {ms_ref:9.1f} ms/forward (median of {args.runs}), peak {mem_ref:.2f} GiB")
    err = float((out_ours.double() - out_ref.double()).norm() / out_ref.double().norm())
    print(f"rel err ours vs diffusers (bf16): {err:.3e}")
    print(
        f"RESULT preset={args.preset} tokens={tokens} ours_ms={ms_ours:.1f} diffusers_ms={ms_ref:.1f} "
        f"ratio_ours_over_diffusers={ms_ours / ms_ref:.3f} peak_gib_ours={mem_ours:.2f} "
        f"peak_gib_diffusers={mem_ref:.2f} rel_err={err:.2e}"
    )
    if not math.isfinite(err):
        print("PARITY FAIL: non-finite output")
        return 1
    if args.fp32_reference == "yes" or (args.fp32_reference == "auto" and args.preset != "14b"):
        del ref
        torch.cuda.empty_cache()
        return check_against_fp32(config, weights, device, x, timestep, context, out_ours, out_ref)
    if err > args.max_rel_err:
        print(f"PARITY FAIL: rel err {err:.3e} > {args.max_rel_err}")
        return 1
    print("PARITY OK")
    return 0


def check_against_fp32(config, weights, device, x, timestep, context, out_ours, out_ref) -> int:
    """Both bf16 outputs vs diffusers in fp32: ours must be at least about as accurate as diffusers' bf16."""
    ref32 = build_diffusers(config, weights, device, fp32=True)
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            out32 = ref32(x, timestep, context.float(), return_dict=False)[0]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32
    err_ours, err_ref = rel(out_ours, out32), rel(out_ref, out32)
    print(f"vs diffusers fp32: ours bf16 rel err {err_ours:.3e}, diffusers bf16 rel err {err_ref:.3e}")
    if err_ours > 1.5 * err_ref + 1e-3:
        print("PARITY FAIL: ours is less accurate than diffusers' bf16 run")
        return 1
    print("PARITY OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
