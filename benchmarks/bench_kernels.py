"""Kernel-level timings at the 14B 720p shapes (GPU): attention backends, FP8 vs bf16 GEMMs, GELU epilogue.

    python benchmarks/bench_kernels.py            # 75 600 tokens, 40 heads, dim 5120, ffn 13 824

Each line: median milliseconds (CUDA events), TFLOP/s and the rel err against the exact
reference (cuDNN bf16 attention; bf16 GEMM). Used to pick the 8-bit path's kernels and to
check the headroom numbers in docs/MEASUREMENTS.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import rel, time_cuda  # noqa: E402


def line(what: str, ms: float, flops: float, err: float | None = None) -> None:
    e = f", rel err {err:.2e}" if err is not None else ""
    print(f"  {what:<44s} {ms:8.2f} ms, {flops / ms / 1e9:6.0f} TFLOP/s{e}", flush=True)


def bench_attention(tokens: int, heads: int, runs: int) -> None:
    from wan_core.dit.attention import attention

    print(f"attention [1, {tokens}, {heads}, 128] bf16", flush=True)
    q, k, v = (torch.randn(1, tokens, heads, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    flops = 4 * tokens * tokens * 128 * heads
    ms, _, ref = time_cuda(lambda: attention(q, k, v, "sdpa_cudnn"), runs)
    line("SDPA cuDNN", ms, flops)
    needs = {"sageattention": "sageattention", "flash_attn_3": "flash_attn_interface", "fp8": "flash_attn_interface"}
    for backend in ("sdpa_flash", "flash_attn_3", "fp8", "int8", "int8_fp16pv", "sageattention"):
        if backend in needs and importlib.util.find_spec(needs[backend]) is None:
            print(f"  {backend}: {needs[backend]} is not installed here (skipped)", flush=True)
            continue
        try:
            ms, _, out = time_cuda(lambda b=backend: attention(q, k, v, b), runs)
        except Exception as exc:  # report and go on: one broken backend must not hide the others
            print(f"  {backend}: FAILED {type(exc).__name__}: {str(exc)[:300]}", flush=True)
            continue
        line(backend, ms, flops, rel(out, ref))
    from wan_core.kernels.int8_attention import int8_attention

    for config in ((128, 128, 8, 3), (128, 128, 8, 2), (128, 64, 4, 3), (64, 128, 4, 3), (128, 32, 4, 4)):
        try:
            ms, _, out = time_cuda(lambda c=config: int8_attention(q, k, v, config=c), runs)
        except Exception as exc:
            print(f"  int8 {config}: FAILED {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            continue
        line(f"int8 (BLOCK_M, BLOCK_N, warps, stages)={config}", ms, flops, rel(out, ref))


def bench_gemms(tokens: int, dim: int, ffn: int, runs: int) -> None:
    from wan_core.kernels import fp8_linear

    print(f"FFN GEMM {tokens}x{dim} @ {dim}x{ffn}", flush=True)
    x = torch.randn(tokens, dim, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(ffn, dim, device="cuda", dtype=torch.bfloat16) * dim**-0.5
    b = torch.randn(ffn, device="cuda", dtype=torch.bfloat16) * 0.1
    flops = 2 * tokens * dim * ffn
    ms, _, ref = time_cuda(lambda: torch.nn.functional.linear(x, w, b), runs)
    line("bf16 linear (+bias)", ms, flops)
    ms, _, out = time_cuda(lambda: torch._addmm_activation(b, x, w.t(), use_gelu=True), runs)
    gelu_ref = torch.nn.functional.gelu(ref.float(), approximate="tanh")
    line("bf16 linear + GELU epilogue", ms, flops, rel(out, gelu_ref))
    ms, _, _ = time_cuda(
        lambda: torch.nn.functional.gelu(torch.nn.functional.linear(x, w, b), approximate="tanh"), runs
    )
    line("bf16 linear, then GELU", ms, flops)
    layer = torch.nn.Linear(dim, ffn, device="cuda", dtype=torch.bfloat16)
    layer.weight.data, layer.bias.data = w, b
    layer.scale_weight = None
    for fast in (True, False):
        fp8_linear.FAST_ACCUM = fast
        kernel = fp8_linear.Fp8Linear(torch.bfloat16)
        rows = fp8_linear.quantize_rows(x)
        ms, _, out = time_cuda(lambda k=kernel, r=rows: k(layer, r), runs)
        line(f"fp8 row-wise _scaled_mm (fast accum {fast})", ms, flops, rel(out, ref))
    fp8_linear.FAST_ACCUM = True
    ms, _, _ = time_cuda(lambda: fp8_linear.quantize_rows(ref, gelu=True), runs)
    print(f"  GELU + fp8 row quantisation of [{tokens}, {ffn}]: {ms:.2f} ms", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=75600)
    p.add_argument("--heads", type=int, default=40)
    p.add_argument("--dim", type=int, default=5120)
    p.add_argument("--ffn", type=int, default=13824)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("SKIP: this benchmark needs a CUDA GPU.")
        return 0
    print(f"torch {torch.__version__}; {torch.cuda.get_device_name()}", flush=True)
    bench_attention(args.tokens, args.heads, args.runs)
    bench_gemms(args.tokens, args.dim, args.ffn, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
