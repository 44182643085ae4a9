"""INT8 weights: per-output-channel symmetric scales, and an int8 x int8 GEMM (``torch._int_mm``).

Why int8: GPUs without fp8 instructions (RTX 30xx, many ROCm cards) still have int8 tensor
cores, and int8 storage halves a bf16 model like fp8 does. Storage: ``q`` int8 [out, in]
and ``scale`` fp32 [out] with ``W ~= q * scale[:, None]`` (scale = row amax / 127).

Two ways to compute ``x @ W^T``:

* dequant (default): ``W`` rebuilt in the compute dtype per call, then a normal matmul;
* int_mm: activations quantised per token (dynamic symmetric scale), ``torch._int_mm``
  accumulates in int32, and the result is rescaled by ``x_scale * w_scale``. Faster only
  where int8 GEMM throughput beats the extra quantise/rescale passes (measure with
  ``benchmarks/bench_quant.py``). Shapes it cannot take (<= 16 tokens, dims not multiples
  of 8) fall back to dequant. On CUDA the quantise and rescale steps are ``torch.compile``d
  once (fused element-wise kernels); ``WAN_CORE_NO_COMPILE=1`` keeps them eager.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

log = logging.getLogger(__name__)

INT8_MAX = 127.0


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[out, in] float -> (int8 [out, in], fp32 scale [out]); each row's amax maps to 127."""
    w32 = w.float()
    scale = torch.linalg.vector_norm(w32, ord=float("inf"), dim=1).clamp_min(1e-12) / INT8_MAX
    q = torch.round(w32 / scale.unsqueeze(1)).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``q * scale[:, None]`` in ``dtype``."""
    return q.to(dtype) * scale.to(dtype).unsqueeze(1)


def quantize_tokens(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, K] float -> (int8 [M, K], fp32 per-token scale [M, 1])."""
    scale = torch.linalg.vector_norm(x, ord=float("inf"), dim=1, keepdim=True, dtype=torch.float32)
    scale = scale.clamp_min(1e-12) / INT8_MAX
    return torch.round(x.float() / scale).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8), scale


def rescale(
    acc: torch.Tensor, x_scale: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """int32 [M, N] accumulators -> ``acc * x_scale * w_scale (+ bias)`` in ``dtype``."""
    out = acc.float() * x_scale * w_scale.unsqueeze(0)
    if bias is not None:
        out = out + bias.float()
    return out.to(dtype)


def can_int_mm(tokens: int, in_features: int, out_features: int) -> bool:
    """``torch._int_mm``'s shape limits (cuBLASLt): more than 16 rows, K and N multiples of 8."""
    return tokens > 16 and in_features % 8 == 0 and out_features % 8 == 0


_COMPILED: dict[str, Callable[..., Any]] = {}
R = TypeVar("R")


def _run_step(name: str, fn: Callable[..., R], *args: Any) -> R:
    """``fn(*args)``; on CUDA through ``torch.compile(fn)`` (fused element-wise kernels), made once.

    A compile failure (no toolchain, an unsupported torch) is logged once and the step runs
    eagerly from then on; out-of-memory errors propagate.
    """
    device = next(a.device for a in args if isinstance(a, torch.Tensor))
    if device.type != "cuda" or os.environ.get("WAN_CORE_NO_COMPILE", "") not in ("", "0"):
        return fn(*args)
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(fn, dynamic=True)
    step: Callable[..., R] = _COMPILED[name]
    if step is fn:
        return fn(*args)
    try:
        return step(*args)
    except torch.OutOfMemoryError:
        raise
    except Exception as exc:  # compiler errors come in many types
        log.warning("torch.compile of the int8 %s step failed (%s); running it eagerly.", name, exc)
        _COMPILED[name] = fn
        return fn(*args)


def int_mm_linear(
    x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor | None:
    """``x @ (q * scale)^T + bias`` via ``torch._int_mm``; None when the shapes do not fit it."""
    x2 = x.reshape(-1, x.shape[-1])
    if not can_int_mm(x2.shape[0], q.shape[1], q.shape[0]):
        return None
    xq, xs = _run_step("quantize", quantize_tokens, x2)
    acc = torch._int_mm(xq, q.t())  # pyright: ignore[reportPrivateImportUsage]  (torch's int8 GEMM; not in its stubs)
    out = _run_step("rescale", rescale, acc, xs, scale, bias, x.dtype)
    return out.reshape(*x.shape[:-1], q.shape[0])
