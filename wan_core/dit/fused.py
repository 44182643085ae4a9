"""Optional fused GPU kernels for the DiT's element-wise work (Triton; CUDA/ROCm only).

Why: at 1280x720x81 one block touches a [75600, 5120] residual stream dozens of
times (LayerNorm, modulation, casts, q/k RMSNorm, RoPE). Each eager op reads and
writes the whole tensor; these kernels do each group in one pass:

* :func:`norm_affine` - ``LayerNorm(x) * mul + add`` written straight in the compute
  dtype (the modulated pre-norms, and ``norm3`` with its affine weight/bias);
* :func:`rms_norm_rope` - q/k RMSNorm across heads, times its weight, then the 3-D
  rotation, written in the compute dtype (RoPE optional, for cross-attention q);
* :func:`residual_norm_affine` - the gated residual update ``x += y * gate`` and the
  next norm (+ modulation) in one pass over the fp32 stream;
* :func:`linear_gelu` - the FFN's first Linear with its bias and the tanh GELU in the
  GEMM's epilogue (cuBLASLt through ``torch._addmm_activation``; no Triton needed).

Numerics equal the eager path in :mod:`wan_core.dit.blocks` (fp32 statistics, fp32
arithmetic, one rounding to the compute dtype at the end). When Triton is missing,
the tensors are not on a GPU, or the compute dtype is fp32, callers use the eager path.
Set ``WAN_CORE_NO_TRITON=1`` to force the eager path.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import torch

from ..kernels import tl, triton

log = logging.getLogger(__name__)


_HALF = (torch.bfloat16, torch.float16)
FP8_ROWS = torch.float8_e4m3fn  # as an output dtype: Fp8Rows (fp8 rows + per-row scales) for the FP8 GEMMs


def enabled(x: torch.Tensor, out_dtype: torch.dtype) -> bool:
    """True when the fused kernels can run for this tensor and output dtype."""
    return (
        triton is not None
        and x.is_cuda
        and (out_dtype in _HALF or out_dtype == FP8_ROWS)
        and os.environ.get("WAN_CORE_NO_TRITON", "") in ("", "0")
    )


if triton is not None:

    @triton.jit
    def _store_row(OUT, SCALE, row, cols, m, y, FP8: tl.constexpr):
        """Store one output row; FP8: scaled by its amax into e4m3 range, the scale to SCALE[row]."""
        if FP8:
            s = tl.maximum(tl.max(tl.where(m, tl.abs(y), 0.0), axis=0), 1e-12) / 448.0
            tl.store(SCALE + row, s)
            y = y / s
        tl.store(OUT + cols, y.to(OUT.dtype.element_ty), mask=m)

    @triton.jit
    def _norm_affine_kernel(
        X, MUL, ADD, OUT, SCALE, S, D, mul_b, mul_s, add_b, add_s, eps, FP8: tl.constexpr, BLOCK: tl.constexpr
    ):
        row = tl.program_id(0)
        b = row // S
        s = row % S
        cols = tl.arange(0, BLOCK)
        m = cols < D
        x = tl.load(X + row.to(tl.int64) * D + cols, mask=m, other=0.0).to(tl.float32)
        mean = tl.sum(x, axis=0) / D
        xc = tl.where(m, x - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=0) / D + eps)
        mul = tl.load(MUL + b * mul_b + s * mul_s + cols, mask=m, other=0.0).to(tl.float32)
        add = tl.load(ADD + b * add_b + s * add_s + cols, mask=m, other=0.0).to(tl.float32)
        _store_row(OUT + row.to(tl.int64) * D, SCALE, row, cols, m, xc * rstd * mul + add, FP8)

    @triton.jit
    def _residual_norm_kernel(
        X,
        Y,
        GATE,
        MUL,
        ADD,
        OUT,
        SCALE,
        S,
        D,
        g_b,
        g_s,
        mul_b,
        mul_s,
        add_b,
        add_s,
        eps,
        GATED: tl.constexpr,
        FP8: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0)
        b = row // S
        s = row % S
        cols = tl.arange(0, BLOCK)
        m = cols < D
        xp = X + row.to(tl.int64) * D + cols
        x = tl.load(xp, mask=m, other=0.0)
        y = tl.load(Y + row.to(tl.int64) * D + cols, mask=m, other=0.0).to(tl.float32)
        if GATED:
            y = y * tl.load(GATE + b * g_b + s * g_s + cols, mask=m, other=0.0)
        x = x + y
        tl.store(xp, x, mask=m)
        mean = tl.sum(x, axis=0) / D
        xc = tl.where(m, x - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=0) / D + eps)
        mul = tl.load(MUL + b * mul_b + s * mul_s + cols, mask=m, other=0.0).to(tl.float32)
        add = tl.load(ADD + b * add_b + s * add_s + cols, mask=m, other=0.0).to(tl.float32)
        _store_row(OUT + row.to(tl.int64) * D, SCALE, row, cols, m, xc * rstd * mul + add, FP8)

    @triton.jit
    def _rms_rope_kernel(X, W, TBL, OUT, S, D, HALF_HEAD, eps, ROPE: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        pair = tl.arange(0, BLOCK)
        m = pair < D // 2
        base = X + row.to(tl.int64) * D
        xe = tl.load(base + 2 * pair, mask=m, other=0.0).to(tl.float32)
        xo = tl.load(base + 2 * pair + 1, mask=m, other=0.0).to(tl.float32)
        r = 1.0 / tl.sqrt(tl.sum(xe * xe + xo * xo, axis=0) / D + eps)
        xe = xe * r * tl.load(W + 2 * pair, mask=m, other=0.0).to(tl.float32)
        xo = xo * r * tl.load(W + 2 * pair + 1, mask=m, other=0.0).to(tl.float32)
        if ROPE:
            s = row % S
            j = pair % HALF_HEAD
            tbl = TBL + s.to(tl.int64) * HALF_HEAD * 2 + 2 * j
            c = tl.load(tbl, mask=m, other=1.0)
            sn = tl.load(tbl + 1, mask=m, other=0.0)
            xe, xo = xe * c - xo * sn, xe * sn + xo * c
        out = OUT + row.to(tl.int64) * D
        tl.store(out + 2 * pair, xe.to(OUT.dtype.element_ty), mask=m)
        tl.store(out + 2 * pair + 1, xo.to(OUT.dtype.element_ty), mask=m)


def _warps(block: int) -> int:
    return 4 if block <= 1024 else 8 if block <= 4096 else 16


def _strides(t: torch.Tensor, batch: int, seq: int) -> tuple[int, int]:
    """(batch stride, token stride) of a [B|1, 1|S, D] or [D] broadcast operand (0 = broadcast)."""
    if t.ndim == 1:
        return 0, 0
    b = t.stride(0) if t.shape[0] == batch and batch > 1 else 0
    s = t.stride(1) if t.shape[1] == seq and seq > 1 else 0
    return b, s


def _broadcast_operand(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous() if t.ndim == 1 or t.stride(-1) != 1 else t


def _output(x: torch.Tensor, out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The output buffer and its per-row scale buffer (used only for FP8 rows)."""
    out = torch.empty(x.shape, device=x.device, dtype=out_dtype)
    fp8 = out_dtype == FP8_ROWS
    scale = torch.empty(*x.shape[:-1], 1, device=x.device, dtype=torch.float32) if fp8 else out
    return out, scale


def _result(out: torch.Tensor, scale: torch.Tensor):
    if out.dtype != FP8_ROWS:
        return out
    from ..kernels.fp8_linear import Fp8Rows

    return Fp8Rows(out, scale)


def _launch_rows(kernel: Any, rows: int, width: int, *args: Any, **constants: Any) -> None:
    """Launch ``kernel`` with one program per row: BLOCK covers ``width`` elements, warps follow BLOCK."""
    block = int(triton.next_power_of_2(width))
    kernel[(rows,)](*args, **constants, BLOCK=block, num_warps=_warps(block))


def norm_affine(x: torch.Tensor, mul: torch.Tensor, add: torch.Tensor, eps: float, out_dtype: torch.dtype):
    """``LayerNorm(x) * mul + add`` -> ``out_dtype``; x [B, S, D] (any float), mul/add [B|1, 1|S, D] or [D] fp32.

    ``out_dtype`` fp8 e4m3: returns :class:`~wan_core.kernels.fp8_linear.Fp8Rows` (one scale per token).
    """
    batch, seq, dim = x.shape
    x = x.contiguous()
    mul, add = _broadcast_operand(mul), _broadcast_operand(add)
    out, scale = _output(x, out_dtype)
    _launch_rows(
        _norm_affine_kernel,
        batch * seq,
        dim,
        x,
        mul,
        add,
        out,
        scale,
        seq,
        dim,
        *_strides(mul, batch, seq),
        *_strides(add, batch, seq),
        eps,
        FP8=out_dtype == FP8_ROWS,
    )
    return _result(out, scale)


def residual_norm_affine(
    x: torch.Tensor,
    y: torch.Tensor,
    gate: torch.Tensor | None,
    mul: torch.Tensor,
    add: torch.Tensor,
    eps: float,
    out_dtype: torch.dtype,
):
    """``x += y * gate`` in place (gate None: ``x += y``), then ``LayerNorm(x) * mul + add`` -> ``out_dtype``.

    One pass instead of two: the residual update and the next norm each read the
    fp32 stream x [B, S, D] (contiguous); y [B, S, D] any float; gate/mul/add fp32
    [B|1, 1|S, D] or [D]. ``out_dtype`` fp8 e4m3: returns Fp8Rows (see :func:`norm_affine`).
    """
    batch, seq, dim = x.shape
    if not x.is_contiguous():
        raise ValueError("residual_norm_affine updates x in place and needs it contiguous")
    y = y.contiguous()
    gate_t = _broadcast_operand(gate) if gate is not None else x
    mul, add = _broadcast_operand(mul), _broadcast_operand(add)
    out, scale = _output(x, out_dtype)
    _launch_rows(
        _residual_norm_kernel,
        batch * seq,
        dim,
        x,
        y,
        gate_t,
        mul,
        add,
        out,
        scale,
        seq,
        dim,
        *(_strides(gate_t, batch, seq) if gate is not None else (0, 0)),
        *_strides(mul, batch, seq),
        *_strides(add, batch, seq),
        eps,
        GATED=gate is not None,
        FP8=out_dtype == FP8_ROWS,
    )
    return _result(out, scale)


def rms_norm_rope(
    x: torch.Tensor, weight: torch.Tensor, eps: float, rope: torch.Tensor | None, head_dim: int
) -> torch.Tensor:
    """RMSNorm over D (weight [D]) then, if ``rope`` is given, RoPE; x [B, S, D] -> same shape in x.dtype.

    ``rope``: complex64 factors [S, 1, head_dim/2] (read as interleaved cos/sin).
    """
    batch, seq, dim = x.shape
    x = x.contiguous()
    out = torch.empty_like(x)
    table = torch.view_as_real(rope).contiguous() if rope is not None else weight
    _launch_rows(
        _rms_rope_kernel,
        batch * seq,
        dim // 2,
        x,
        weight.float().contiguous(),
        table,
        out,
        seq,
        dim,
        head_dim // 2,
        eps,
        ROPE=rope is not None,
    )
    return out


def _plain_weight(layer: torch.nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The layer's (weight, bias) when both are plain tensors in ``dtype`` with nothing else to apply, else None."""
    weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
    if not (isinstance(weight, torch.Tensor) and isinstance(bias, torch.Tensor)):
        return None
    plain = (
        type(weight) in (torch.Tensor, torch.nn.Parameter)
        and weight.dtype == dtype
        and bias.dtype == dtype
        and getattr(layer, "scale_weight", None) is None
        and not getattr(layer, "adapters", None)
        and getattr(layer, "kernel", None) is None
    )
    return (weight, bias) if plain else None


def _addmm_activation(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, use_gelu: bool) -> torch.Tensor:
    """``bias + a @ b`` with GELU in the GEMM's epilogue: a private torch op its type stubs do not export
    (looked up per call, so tests can watch it)."""
    op = torch._addmm_activation  # pyright: ignore[reportPrivateImportUsage]
    return op(bias, a, b, use_gelu=use_gelu)


@functools.lru_cache(maxsize=None)
def epilogue_gelu_is_tanh(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether ``torch._addmm_activation(use_gelu=True)`` applies the tanh GELU here (Wan's FFN needs tanh).

    Read once per device and dtype from a product that is exact in any precision (identity
    weight): at x = -3 the tanh and erf forms differ by 10 %. PyTorch's CPU kernel uses erf.
    """
    x = torch.tensor([[-3.0, -2.5, 1.0, 2.0]] * 2, device=device, dtype=dtype)
    out = _addmm_activation(
        torch.zeros(4, device=device, dtype=dtype), x, torch.eye(4, device=device, dtype=dtype), use_gelu=True
    )
    ref = x.double()
    tanh = torch.nn.functional.gelu(ref, approximate="tanh")
    erf = torch.nn.functional.gelu(ref)
    return bool((out.double() - tanh).abs().sum() < (out.double() - erf).abs().sum())


def linear_gelu(layer: torch.nn.Module, x: torch.Tensor, epilogue: bool | None = None) -> torch.Tensor:
    """``gelu_tanh(layer(x))`` for x [..., in]; with a plain weight the GELU runs in the GEMM's epilogue.

    On CUDA cuBLASLt applies bias + GELU(tanh) to the fp32 accumulator before rounding
    (one write of [.., out] instead of a write, a read and a write). ``epilogue`` None:
    on CUDA only (on the CPU the same call is addmm + in-place GELU, no faster; tests
    force it there). Anything else (fp8 or scaled weights, LoRA adapters, a weight
    kernel) takes ``layer(x)`` and a separate GELU.
    """
    plain = _plain_weight(layer, x.dtype)
    use = x.is_cuda if epilogue is None else epilogue and x.device.type in ("cuda", "cpu")
    if plain is None or not use or x.numel() == 0 or not epilogue_gelu_is_tanh(x.device, x.dtype):
        return torch.nn.functional.gelu(layer(x), approximate="tanh")
    weight, bias = plain
    out = _addmm_activation(bias, x.reshape(-1, x.shape[-1]), weight.t(), use_gelu=True)
    return out.view(*x.shape[:-1], out.shape[-1])
