"""Quantised DiT weights on one GPU: forward time, peak memory and error of GGUF Q8_0 / Q4_K and INT8 vs bf16.

    python benchmarks/bench_quant.py            # 14B, 832x480x81, then a 2-step sample capped at 12 GiB
    python benchmarks/bench_quant.py --smoke    # tiny sizes; runs on CPU too (proves the script works)

Random bf16 weights at full 14B size are made on the GPU (no files). The quantised
models are made from the *same* weights in-process:

* GGUF Q8_0: ``wan_core.quant.ggml.quantize_q8_0`` (torch, ggml's rounding rule);
* GGUF Q4_K: a simple torch Q4_K quantiser defined here, for this benchmark only
  (per 32-weight sub-block min/max, 6-bit scales/mins; no llama.cpp-style search, so its
  error is a bit above a real Q4_K_M file's). Its bytes are decoded by the same
  dequantiser as GGUF files; ``--smoke`` checks them against ``gguf.quants`` when installed;
* INT8: ``wan_core.load_dit(weights, dtype="int8")`` (the loader's own path), timed with the
  dequantising matmul and with ``torch._int_mm`` (``set_matmul(model, "int_mm")``);
* fp8 e4m3 (plain, dequantised per layer) for reference.

Each row: median forward ms (wall clock with CUDA synchronisation, after warm-up), ratio to
bf16, peak GPU memory of that model alone (its parameters and buffers + the peak working
memory of a forward above them), its Linear weight bytes, and the output's relative error
against the bf16 output. Then, with the process
capped at ``--cap-gib`` (``torch.cuda.set_per_process_memory_fraction``), a 2-step UniPC
sample (CFG 5, cond/uncond one after the other) of the 14B at 832x480x81 with Q4_K
weights and ``--swap-blocks`` blocks swapped from pinned CPU memory; it must finish.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dit import latent_shape, random_weights  # noqa: E402
from timing import rel  # noqa: E402

import wan_core  # noqa: E402
from wan_core.conditioning.types import Conditioning  # noqa: E402
from wan_core.devices import empty_cache, module_bytes  # noqa: E402
from wan_core.dit.config import DiTConfig, released_config  # noqa: E402
from wan_core.ops import WanLinear  # noqa: E402
from wan_core.quant import QuantizedWeight, set_matmul  # noqa: E402
from wan_core.quant.ggml import dequantize, quantize_q8_0  # noqa: E402
from wan_core.sampling import SamplerSettings, sample  # noqa: E402

FORMATS = ("bf16", "Q8_0", "Q4_K", "int8", "int8_int_mm", "fp8")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny model and video; any device (CPU if no CUDA)")
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--size", default="832x480", help="WIDTHxHEIGHT")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--formats", default=",".join(FORMATS), help=f"comma list of {', '.join(FORMATS)}")
    p.add_argument("--cap-gib", type=float, default=12.0, help="memory cap of the capped sample (CUDA)")
    p.add_argument("--swap-blocks", type=int, default=20, help="blocks swapped in the capped sample")
    p.add_argument("--steps", type=int, default=2, help="steps of the capped sample")
    p.add_argument("--skip-sample", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


# ----------------------------------------------------------------------------- Q4_K (benchmark only)


def quantize_q4_k(w: torch.Tensor) -> torch.Tensor:
    """float weights (numel % 256 == 0) -> Q4_K blocks uint8 [n, 144]: [d, dmin, scales12, qs128].

    Per 32-weight sub-block: min (<= 0) and range / 15 quantised as 6-bit multiples of the
    super-block's fp16 ``d`` / ``dmin``; weights rounded to 4 bits against those values.
    """
    x = w.float().reshape(-1, 8, 32)
    neg_min = (-x.amin(-1)).clamp_min(0)  # [n, 8]
    step = (x.amax(-1) + neg_min) / 15
    d = (step.amax(-1, keepdim=True) / 63).half()
    dmin = (neg_min.amax(-1, keepdim=True) / 63).half()
    sc = _ratio(step, d.float()).round().clamp(0, 63)
    mn = _ratio(neg_min, dmin.float()).round().clamp(0, 63)
    eff_step = (d.float() * sc).unsqueeze(-1)
    eff_min = (dmin.float() * mn).unsqueeze(-1)
    q = _ratio(x + eff_min, eff_step).round().clamp(0, 15).to(torch.uint8).view(-1, 4, 2, 32)
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)
    sc, mn = sc.to(torch.uint8), mn.to(torch.uint8)
    scales = torch.cat(
        [
            sc[:, :4] | ((sc[:, 4:] >> 4) << 6),
            mn[:, :4] | ((mn[:, 4:] >> 4) << 6),
            (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4),
        ],
        dim=1,
    )
    head = torch.cat([d, dmin], dim=1).view(torch.uint8)
    return torch.cat([head, scales, qs], dim=1)


def _ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, a / torch.where(b > 0, b, 1.0), 0.0)


def check_q4_k(device: torch.device) -> None:
    """The benchmark's Q4_K bytes decode to a close copy of the input (and equal gguf's decoding)."""
    w = torch.randn(64, 512, device=device)
    packed = quantize_q4_k(w)
    ours = dequantize(packed, "Q4_K", tuple(w.shape))
    err = rel(ours, w)
    line = f"smoke: Q4_K quantiser rel err {err:.3f}"
    try:
        import gguf

        ref = gguf.quants.dequantize(packed.cpu().numpy(), gguf.GGMLQuantizationType.Q4_K).reshape(64, 512)
        assert torch.equal(torch.from_numpy(ref), ours.cpu()), "our Q4_K decoding differs from gguf's"
        line += ", decodes identically with gguf.quants"
    except ImportError:
        line += " (gguf not installed: not cross-checked)"
    print(line)
    assert err < 0.15, f"Q4_K quantiser error {err:.3f} is too large"


# ----------------------------------------------------------------------------- models


GGUF_QUANTISERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"Q8_0": quantize_q8_0, "Q4_K": quantize_q4_k}


def gguf_model(weights: dict[str, torch.Tensor], type_name: str, device: torch.device):
    """The DiT with every block Linear weight packed as ``type_name`` (the rest shares ``weights``)."""
    model = wan_core.load_dit(weights, device=device)
    for layer in model.blocks.modules():
        if isinstance(layer, WanLinear):
            packed = GGUF_QUANTISERS[type_name](layer.weight)
            layer.store_weight(QuantizedWeight(packed, None, layer.weight_shape, type_name))
    return model


def build(fmt: str, weights: dict[str, torch.Tensor], device: torch.device):
    if fmt == "bf16":
        return wan_core.load_dit(weights, device=device)
    if fmt in GGUF_QUANTISERS:
        return gguf_model(weights, fmt, device)
    if fmt.startswith("int8"):
        model = wan_core.load_dit(weights, device=device, dtype="int8")
        set_matmul(model, "int_mm" if fmt == "int8_int_mm" else "dequant")
        return model
    if fmt == "fp8":
        return wan_core.load_dit(weights, device=device, dtype=torch.float8_e4m3fn)
    raise SystemExit(f"unknown format {fmt!r}; use {', '.join(FORMATS)}")


def linear_bytes(model) -> int:
    return sum(m.quantized_weight().nbytes for m in model.modules() if isinstance(m, WanLinear))


# ----------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], torch.Tensor], device: torch.device, runs: int, warmup: int):
    """(median ms, peak bytes during the runs or None, last output)."""
    out = None
    for _ in range(warmup):
        out = fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1000)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return statistics.median(times), peak, out


@dataclass
class Row:
    fmt: str
    ms: float
    peak_gib: float | None
    weight_gib: float
    err: float


def forward_rows(args, config: DiTConfig, weights, x, t, context, device) -> list[Row]:
    rows, reference = [], None
    for fmt in ["bf16", *[f for f in args.formats.split(",") if f != "bf16"]]:
        model = build(fmt, weights, device)
        resident = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        ms, peak, out = timed(lambda m=model: m(x, t, context), device, args.runs, args.warmup)
        out = out.float().cpu()
        reference = out if reference is None else reference
        peak_gib = None if peak is None else (module_bytes(model) + peak - resident) / 2**30
        rows.append(Row(fmt, ms, peak_gib, linear_bytes(model) / 2**30, rel(out, reference)))
        peak_text = "n/a" if peak_gib is None else f"{peak_gib:.2f} GiB"
        print(f"{fmt:12s} {ms:9.1f} ms/forward, peak {peak_text}", flush=True)
        del model, out
        empty_cache(device)
    return rows


def capped_sample(args, config: DiTConfig, weights: dict[str, torch.Tensor], context, latent, device) -> str:
    """Q4_K + block swap under a memory cap: a short sample must finish.

    The Q4_K model is made from ``weights``, which are then dropped (``weights`` is
    cleared), so that only the quantised model is on the GPU when the cap is set.
    """
    model = gguf_model(weights, "Q4_K", device)
    weights.clear()
    model.set_block_swap(min(args.swap_blocks, config.num_layers), "cpu")
    empty_cache(device)
    resident = torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap_gib * 2**30 / total), index)
        torch.cuda.reset_peak_memory_stats(device)
    settings = SamplerSettings(steps=args.steps, cfg=5.0, seed=args.seed, batch_cfg=False)
    start = time.perf_counter()
    out = sample(model, [context[0]], [context[0] * 0.5], Conditioning(latent), settings, device=device)
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    assert torch.isfinite(out).all(), "the capped sample produced non-finite values"
    cap = f"cap {args.cap_gib:g} GiB" if device.type == "cuda" else "no cap (CPU)"
    return (
        f"Q4_K + block swap {model.block_swap and len(model.block_swap.indices)}/{config.num_layers}, {cap}: "
        f"{args.steps}-step sample (CFG, {2 * args.steps} forwards) finished in {seconds:.1f} s; "
        f"peak {peak:.2f} GiB incl. weights, resident after loading {resident:.2f} GiB"
    )


# ----------------------------------------------------------------------------- main


def smoke_config() -> DiTConfig:
    from wan_core.dit.tiny import tiny_dit_config

    return tiny_dit_config("wan2.1-t2v")


def print_table(rows: list[Row], header: str) -> None:
    base = rows[0].ms
    print(f"\n{header}")
    print("| weights | ms/forward | x bf16 | peak GiB | Linear weights GiB | rel err vs bf16 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        peak = "n/a" if r.peak_gib is None else f"{r.peak_gib:.2f}"
        print(f"| {r.fmt} | {r.ms:.1f} | {r.ms / base:.3f} | {peak} | {r.weight_gib:.2f} | {r.err:.2e} |")


def main() -> int:
    args = parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("ERROR: this benchmark needs a CUDA GPU (use --smoke to check it on the CPU).")
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    if args.smoke:
        config = smoke_config()
        args.frames, args.size, args.swap_blocks = 5, "64x64", 1
        check_q4_k(device)
    else:
        config = released_config("wan2.1-t2v-14b")
    width, height = (int(v) for v in args.size.lower().split("x"))
    latent = latent_shape(config, args.frames, width, height)
    tokens = latent[1] * (latent[2] // 2) * (latent[3] // 2)
    gpu = torch.cuda.get_device_name(device) if cuda else "CPU"
    header = (
        f"{config.variant} (dim {config.dim}, {config.num_layers} layers), {args.frames}x{height}x{width} -> "
        f"{tokens} tokens; {gpu}; torch {torch.__version__}"
    )
    print(header, flush=True)
    weights = random_weights(config, device, args.seed)
    if not cuda:  # the CPU smoke run computes in fp32: bf16 weights there only slow it down
        weights = {k: v.float() for k, v in weights.items()}
    gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    x = torch.randn(1, *latent, generator=gen, device=device)
    dtype = torch.bfloat16 if cuda else torch.float32
    context = torch.randn(1, 77, config.text_dim, generator=gen, device=device, dtype=dtype)
    t = torch.tensor([700.0], device=device)
    rows = forward_rows(args, config, weights, x, t, context, device)
    print_table(rows, header)
    if args.skip_sample:
        return 0
    try:
        print(capped_sample(args, config, weights, context, latent, device))
    except torch.OutOfMemoryError as exc:
        print(f"Q4_K + block swap {args.swap_blocks} under {args.cap_gib:g} GiB: DID NOT FINISH (out of memory: {exc})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
