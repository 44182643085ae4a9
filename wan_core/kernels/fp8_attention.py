"""FP8 attention through flash-attn 3's Hopper kernel: FP8 Q, K, V with one scale per head; bf16 out.

Why: at 14B 720p attention is ~75 % of a forward. On the lent H200, flash-attn 3's FP8 forward
ran at 941 TFLOP/s (124 ms per call), against 580 for cuDNN's bf16 kernel and 574 for our INT8
Triton kernel (see benchmarks/README.md). Its price is accuracy: P is rounded to e4m3 inside the
kernel, so one call on zero-mean random data is 5e-2 to 7e-2 off (inside a random-weight DiT,
3e-3 to 5e-3). So this is the ``attention="fp8"`` backend: an explicit choice, or what ``auto``
becomes on the opt-in 8-bit path (``WanDiT.set_fast_8bit``), never the exact path's pick.

* Q, K, V go to e4m3 with one scale per (batch, head): flash-attn 3's ``q/k/v_descale`` shape.
* K is smoothed first (its mean over tokens is subtracted per head and channel). Softmax is
  unchanged, since that only adds a constant to each row of Q K^T, and the range left to
  quantise is smaller where K has a per-channel offset.
* V is smoothed too, and its mean added back to the output (see :func:`fp8_attention`).
* Two Triton passes per tensor: per-(head, channel) maxima, minima and sums (atomics), then the cast.
  :func:`quantize_heads_eager` is the reference (and the path without Triton).

Needs flash-attn 3 (``flash_attn_interface``, built from flash-attention's ``hopper/`` folder)
and an NVIDIA GPU of compute capability 9.0.
"""

from __future__ import annotations

import importlib
import logging
from functools import lru_cache
from types import ModuleType
from typing import NamedTuple

import torch

from ..errors import BackendUnavailableError
from . import interpreted, tl, triton, usable

log = logging.getLogger(__name__)

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
BLOCK = 64  # tokens per Triton tile
STATS_ITERS = 16  # tiles per program of the statistics pass
FP8_MIN_KEYS = 2048  # shorter key sequences (text and image context) stay bf16: see fp8_attention

if triton is not None:

    @triton.jit
    def _tile(X, b, h, blk, S, sx_b, sx_s, sx_h, BLOCK: tl.constexpr, D: tl.constexpr):
        s = blk * BLOCK + tl.arange(0, BLOCK)
        d = tl.arange(0, D)
        m = (s < S)[:, None]
        ptr = X + b.to(tl.int64) * sx_b + s[:, None].to(tl.int64) * sx_s + h * sx_h + d[None, :]
        return tl.load(ptr, mask=m, other=0.0).to(tl.float32), s, d, m

    @triton.jit
    def _head_stats_kernel(
        X, SUM, CMAX, CMIN, S, H, sx_b, sx_s, sx_h,
        BLOCK: tl.constexpr, D: tl.constexpr, SUMS: tl.constexpr, ITERS: tl.constexpr,
    ):  # fmt: skip
        """Per (batch, head, channel) of x [B, S, H, d]: max and min over tokens and (when SUMS) the sum.

        Each program reduces ITERS blocks in registers, then adds one atomic per channel (fewer collisions).
        """
        chunk = tl.program_id(0)
        bh = tl.program_id(1)
        hi = tl.full([D], float("-inf"), tl.float32)
        lo = tl.full([D], float("inf"), tl.float32)
        total = tl.zeros([D], tl.float32)
        for i in range(ITERS):
            x, _, _, m = _tile(X, bh // H, bh % H, chunk * ITERS + i, S, sx_b, sx_s, sx_h, BLOCK, D)  # pyright: ignore[reportGeneralTypeIssues]  (a jit helper's tuple reads as NoReturn)
            hi = tl.maximum(hi, tl.max(tl.where(m, x, float("-inf")), axis=0))
            lo = tl.minimum(lo, tl.min(tl.where(m, x, float("inf")), axis=0))
            total += tl.sum(x, axis=0)
        d = tl.arange(0, D)
        tl.atomic_max(CMAX + bh * D + d, hi)
        tl.atomic_min(CMIN + bh * D + d, lo)
        if SUMS:
            tl.atomic_add(SUM + bh * D + d, total)

    @triton.jit
    def _quant_heads_kernel(
        X, MEAN, SCALE, OUT, S, H, sx_b, sx_s, sx_h, BLOCK: tl.constexpr, D: tl.constexpr, SMOOTH: tl.constexpr
    ):
        """x [B, S, H, d] -> e4m3 [B, S, H, d]: (x - mean) * scale of its (batch, head)."""
        blk = tl.program_id(0)
        bh = tl.program_id(1)
        h = bh % H
        x, s, d, m = _tile(X, bh // H, h, blk, S, sx_b, sx_s, sx_h, BLOCK, D)  # pyright: ignore[reportGeneralTypeIssues]  (a jit helper's tuple reads as NoReturn)
        if SMOOTH:
            x = x - tl.load(MEAN + bh * D + d)[None, :]
        y = tl.minimum(tl.maximum(x * tl.load(SCALE + bh), -448.0), 448.0)
        optr = OUT + (bh // H).to(tl.int64) * S * H * D + s[:, None].to(tl.int64) * H * D + h * D + d[None, :]
        tl.store(optr, y.to(OUT.dtype.element_ty), mask=m)


def _descale(cmax: torch.Tensor, cmin: torch.Tensor, mean: torch.Tensor | None) -> torch.Tensor:
    """[B, H, d] channel maxima and minima over tokens (and means) -> one fp32 descale per (batch, head), [B, H].

    The range is exact: max |x - mean| over a channel is max(cmax - mean, mean - cmin).
    """
    bound = torch.maximum(cmax, -cmin) if mean is None else torch.maximum(cmax - mean, mean - cmin)
    return (bound.amax(dim=-1) / FP8_MAX).clamp_min(1e-12)


class HeadQuant(NamedTuple):
    """x [B, S, H, d] as e4m3 values, one fp32 descale per (batch, head) [B, H], and the removed mean [B, H, d]."""

    values: torch.Tensor
    descale: torch.Tensor
    mean: torch.Tensor | None


def quantize_heads_eager(x: torch.Tensor, smooth: bool = False) -> HeadQuant:
    """x [B, S, H, d] -> e4m3 with a scale per (batch, head); the mean over tokens removed first when ``smooth``."""
    xf = x.float()
    mean = xf.mean(dim=1) if smooth else None  # [B, H, d]
    descale = _descale(xf.amax(dim=1), xf.amin(dim=1), mean)
    if mean is not None:
        xf = xf - mean[:, None]
    return HeadQuant((xf / descale[:, None, :, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8), descale, mean)


def quantize_heads(x: torch.Tensor, smooth: bool = False) -> HeadQuant:
    """:func:`quantize_heads_eager` in two Triton passes (the eager one where Triton cannot run)."""
    if triton is None or not (usable(x) or (x.device.type == "cpu" and interpreted())):
        return quantize_heads_eager(x, smooth)
    batch, seq, heads, dim = x.shape
    if x.stride(-1) != 1:
        x = x.contiguous()
    cmax = torch.full((batch, heads, dim), float("-inf"), device=x.device, dtype=torch.float32)
    cmin = torch.full_like(cmax, float("inf"))
    sums = torch.zeros_like(cmax) if smooth else cmax
    grid = (triton.cdiv(seq, BLOCK), batch * heads)
    strides = (x.stride(0), x.stride(1), x.stride(2))
    iters = min(STATS_ITERS, triton.cdiv(seq, BLOCK))
    stats_grid = (triton.cdiv(seq, BLOCK * iters), batch * heads)
    _head_stats_kernel[stats_grid](
        x, sums, cmax, cmin, seq, heads, *strides, BLOCK=BLOCK, D=dim, SUMS=smooth, ITERS=iters, num_warps=4,  # pyright: ignore[reportCallIssue]  (triton types a launch as the kernel's signature, without launch options)
    )  # fmt: skip
    mean = sums / seq if smooth else None
    descale = _descale(cmax, cmin, mean)
    scale = (1.0 / descale).contiguous()
    out = torch.empty(x.shape, device=x.device, dtype=FP8)
    _quant_heads_kernel[grid](
        x, mean if mean is not None else cmax, scale, out, seq, heads, *strides,
        BLOCK=BLOCK, D=dim, SMOOTH=smooth, num_warps=4,  # pyright: ignore[reportCallIssue]  (triton types a launch as the kernel's signature, without launch options)
    )  # fmt: skip
    return HeadQuant(out, descale, mean)


def flash_attn_3() -> ModuleType | None:
    """flash-attn 3's interface module, or None when it is not installed."""
    try:
        return importlib.import_module("flash_attn_interface")
    except (ImportError, OSError):
        return None


def _unavailable(device: torch.device) -> str | None:
    """Why ``attention='fp8'`` cannot run on ``device`` (the rest of the error's sentence); None when it can."""
    if flash_attn_3() is None:
        return (
            " runs flash-attn 3's FP8 kernel, which is not installed (module flash_attn_interface). "
            "Build it from flash-attention's hopper/ folder (docs/KERNELS.md), or use the exact attention='sdpa'."
        )
    if device.type != "cuda" or torch.version.hip is not None or torch.cuda.get_device_capability(device)[0] != 9:
        where = f"sm_{''.join(map(str, torch.cuda.get_device_capability(device)))}" if device.type == "cuda" else device
        return (
            f" (flash-attn 3's FP8 kernel) needs an NVIDIA Hopper GPU (sm_90); the model runs on "
            f"{where}. Use the exact attention='sdpa', or attention='int8' (our Triton kernel, sm_89+)."
        )
    if not _fp8_forward_runs(str(device)):
        return (
            ": this flash-attn 3 build cannot run its FP8 forward for head dim 128 (built with "
            "FLASH_ATTENTION_DISABLE_FP8 or _HDIM128, or an interface without q/k/v_descale). Rebuild it with FP8 "
            "(docs/KERNELS.md), or use the exact attention='auto'."
        )
    return None


def check_device(device: torch.device) -> ModuleType:
    """flash-attn 3's module; a BackendUnavailableError saying what is missing when ``device`` cannot run it."""
    reason = _unavailable(device)
    module = flash_attn_3()
    if reason is not None or module is None:
        raise BackendUnavailableError(f"attention='fp8'{reason}")
    return module


def runs_fp8(device: torch.device) -> bool:
    """Whether ``attention='fp8'`` runs on ``device``: Hopper, flash-attn 3 installed, its FP8 forward built."""
    return _unavailable(device) is None


@lru_cache(maxsize=None)
def _fp8_forward_runs(device: str) -> bool:
    """One tiny FP8 call per device: a build without the FP8 kernels must not fail mid-run."""
    fa3 = flash_attn_3()
    if fa3 is None:
        return False
    x = torch.zeros(1, 128, 1, 128, device=device, dtype=FP8)
    one = torch.ones(1, 1, device=device)
    try:
        fa3.flash_attn_func(x, x, x, q_descale=one, k_descale=one, v_descale=one)
    except (RuntimeError, TypeError) as exc:
        log.warning("flash-attn 3 cannot run FP8 attention on %s (%s); 8-bit attention stays off.", device, exc)
        return False
    return True


def flash_attn_output(out: torch.Tensor | tuple) -> torch.Tensor:
    """The attention output of a flash-attn call (some flash-attn 3 versions return (out, lse))."""
    return out[0] if isinstance(out, tuple) else out


def fp8_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for q [B, Sq, H, d], k/v [B, Sk, H, d] (fp16/bf16) with FP8 Q, K, V.

    Cross-attention to the text or image context (fewer than FP8_MIN_KEYS keys) runs flash-attn 3
    in bf16: with so few keys the call is memory-bound, and the FP8 kernel was slower there (H200).

    V's mean over tokens goes around the kernel (added to the output: each row of softmax sums
    to 1). Why: the kernel rounds P to e4m3 without scaling it, so the small weights of a flat
    attention row lose most of their bits; with a mean in V that showed as a 0.2-0.4 error per
    call inside a random-weight DiT, 3e-3 to 5e-3 with V smoothed.
    """
    fa3 = check_device(q.device)
    if k.shape[1] < FP8_MIN_KEYS and q.dtype in (torch.float16, torch.bfloat16):
        return flash_attn_output(fa3.flash_attn_func(q, k, v))
    qq, kq, vq = quantize_heads(q), quantize_heads(k, smooth=True), quantize_heads(v, smooth=True)
    out = fa3.flash_attn_func(
        qq.values, kq.values, vq.values, q_descale=qq.descale, k_descale=kq.descale, v_descale=vq.descale
    )
    out = flash_attn_output(out).to(q.dtype)
    assert vq.mean is not None
    return out.add_(vq.mean.to(out.dtype)[:, None])
