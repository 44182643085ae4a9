"""8-bit attention of our own (Triton): INT8 Q K^T with per-block scales, P V in FP8 (e4m3).

Why: at 14B 720p attention is ~75 % of a forward (40 x 204 ms with cuDNN's bf16 kernel).
Hopper's 8-bit tensor cores run twice the bf16 rate, so the two products go 8-bit:

* K is smoothed first (its mean over tokens is subtracted per head: softmax is unchanged,
  since it only adds a constant to each row of Q K^T), then Q and K are quantised to
  INT8 with one scale per block of tokens and head (Q: 128 tokens, K: 64). The softmax
  scale and log2(e) are folded into Q's scale, so the kernel uses ``exp2``.
* V is quantised to FP8 e4m3 with one scale per channel and head (over all tokens) and
  stored transposed [B, H, d, S] (the layout FP8 tensor-core products want).
* P (the online-softmax numerator, in [0, 1]) is scaled by 448 into FP8 range; each block's
  P V product is summed into an fp32 accumulator (two-level accumulation). ``pv="fp16"``
  keeps P and V in fp16 instead (SageAttention 1's choice: half the PV speed-up, less error).

Approximate (rel err ~1e-2 per call), so never chosen by ``auto``: the 8-bit path
(``fast_8bit``) or ``attention="int8"`` asks for it. Inputs [B, S, H, d] fp16/bf16 on a
CUDA GPU of compute capability 8.9 or newer (FP8 products), d in {64, 128}.
"""

from __future__ import annotations

import math

import torch

from ..errors import BackendUnavailableError
from . import interpreted, tl, triton

Q_BLOCK, K_BLOCK = 128, 64
P_SCALE = 448.0  # e4m3's largest finite value: P in [0, 1] -> [0, 448]
LOG2E = 1.4426950408889634
DEFAULT_CONFIG = (64, 128, 4, 3)  # BLOCK_M, BLOCK_N, warps, stages: best of 6 on the H200 (204 ms at 14B 720p)

if triton is not None:

    @triton.jit
    def _quant_blocks_kernel(
        X, MEAN, OUT, SCALE, S, H, sx_b, sx_s, sx_h, extra,
        BLOCK: tl.constexpr, D: tl.constexpr, SMOOTH: tl.constexpr,
    ):  # fmt: skip
        """x [B, S, H, d] -> int8 [B, H, S, d] and one scale per (b, h, block of BLOCK tokens)."""
        blk = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // H
        h = bh % H
        s = blk * BLOCK + tl.arange(0, BLOCK)
        d = tl.arange(0, D)
        m = (s < S)[:, None]
        x = tl.load(
            X + b.to(tl.int64) * sx_b + s[:, None].to(tl.int64) * sx_s + h * sx_h + d[None, :], mask=m, other=0.0
        )
        x = x.to(tl.float32)
        if SMOOTH:
            x = tl.where(m, x - tl.load(MEAN + bh * D + d)[None, :], 0.0)
        amax = tl.maximum(tl.max(tl.max(tl.abs(x), axis=1), axis=0), 1e-8)
        q = x * (127.0 / amax)
        q = tl.where(q >= 0, q + 0.5, q - 0.5).to(tl.int8)
        tl.store(OUT + bh.to(tl.int64) * S * D + s[:, None].to(tl.int64) * D + d[None, :], q, mask=m)
        tl.store(SCALE + bh * tl.cdiv(S, BLOCK) + blk, amax / 127.0 * extra)

    @triton.jit
    def _quant_v_kernel(X, SCALE, OUT, S, H, sx_b, sx_s, sx_h, BLOCK: tl.constexpr, D: tl.constexpr):
        """v [B, S, H, d] / scale[b, h, d] -> fp8 e4m3, transposed to [B, H, d, S]."""
        blk = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // H
        h = bh % H
        s = blk * BLOCK + tl.arange(0, BLOCK)
        d = tl.arange(0, D)
        m = (s < S)[:, None]
        x = tl.load(
            X + b.to(tl.int64) * sx_b + s[:, None].to(tl.int64) * sx_s + h * sx_h + d[None, :], mask=m, other=0.0
        )
        inv = 1.0 / tl.load(SCALE + bh * D + d)
        y = (x.to(tl.float32) * inv[None, :]).to(OUT.dtype.element_ty)
        tl.store(OUT + bh.to(tl.int64) * S * D + d[None, :].to(tl.int64) * S + s[:, None], y, mask=m)

    @triton.jit
    def _attn_block(
        acc, l_i, m_i, q, qs, K, V, KS, start, SK, sv_s,
        D: tl.constexpr, BLOCK_N: tl.constexpr, KB: tl.constexpr, MASK: tl.constexpr, PV_FP8: tl.constexpr,
        PSCALE: tl.constexpr,
    ):  # fmt: skip
        n = start + tl.arange(0, BLOCK_N)
        d = tl.arange(0, D)
        nm = n < SK
        if PV_FP8:  # V^T fp8 [d, SK]
            v_ptr = V + d[:, None].to(tl.int64) * SK + n[None, :]
            v_mask = nm[None, :]
        else:  # V bf16 rows [SK, d] (stride sv_s)
            v_ptr = V + n[:, None].to(tl.int64) * sv_s + d[None, :]
            v_mask = nm[:, None]
        if MASK:
            k = tl.load(K + n[:, None].to(tl.int64) * D + d[None, :], mask=nm[:, None], other=0)
            ks = tl.load(KS + n // KB, mask=nm, other=0.0)
            v = tl.load(v_ptr, mask=v_mask, other=0.0)
        else:
            k = tl.load(K + n[:, None].to(tl.int64) * D + d[None, :])
            ks = tl.load(KS + n // KB)
            v = tl.load(v_ptr)
        s = tl.dot(q, tl.trans(k), out_dtype=tl.int32).to(tl.float32) * qs[:, None] * ks[None, :]
        if MASK:
            s = tl.where(nm[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if PV_FP8:
            pv = tl.dot((p * PSCALE).to(v.dtype), tl.trans(v))
        else:
            pv = tl.dot(p.to(tl.float16), v.to(tl.float16))
        acc = acc * alpha[:, None] + pv
        return acc, l_i, m_new

    @triton.jit
    def _attn_kernel(
        Q, K, V, QS, KS, VS, OUT, SQ, SK, H, so_b, so_s, so_h, sv_b, sv_s, sv_h,
        D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        QB: tl.constexpr, KB: tl.constexpr, PV_FP8: tl.constexpr, PSCALE: tl.constexpr,
    ):  # fmt: skip
        pid = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // H
        h = bh % H
        rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
        d = tl.arange(0, D)
        rm = rows < SQ
        q = tl.load(
            Q + bh.to(tl.int64) * SQ * D + rows[:, None].to(tl.int64) * D + d[None, :], mask=rm[:, None], other=0
        )
        qs = tl.load(QS + bh * tl.cdiv(SQ, QB) + rows // QB, mask=rm, other=0.0)
        k_base = K + bh.to(tl.int64) * SK * D
        if PV_FP8:
            v_base = V + bh.to(tl.int64) * SK * D
        else:
            v_base = V + b.to(tl.int64) * sv_b + h * sv_h
        ks_base = KS + bh * tl.cdiv(SK, KB)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, D], dtype=tl.float32)
        full = (SK // BLOCK_N) * BLOCK_N
        for start in range(0, full, BLOCK_N):
            acc, l_i, m_i = _attn_block(
                acc, l_i, m_i, q, qs, k_base, v_base, ks_base, start, SK, sv_s, D, BLOCK_N, KB, False, PV_FP8, PSCALE
            )
        if full < SK:
            acc, l_i, m_i = _attn_block(
                acc, l_i, m_i, q, qs, k_base, v_base, ks_base, full, SK, sv_s, D, BLOCK_N, KB, True, PV_FP8, PSCALE
            )
        if PV_FP8:
            vs = tl.load(VS + bh * D + d)
            out = acc * (vs[None, :] / PSCALE) / l_i[:, None]
        else:
            out = acc / l_i[:, None]
        optr = OUT + b.to(tl.int64) * so_b + rows[:, None].to(tl.int64) * so_s + h * so_h + d[None, :]
        tl.store(optr, out.to(OUT.dtype.element_ty), mask=rm[:, None])


def check_device(device: torch.device) -> None:
    """Raise a BackendUnavailableError naming this kernel when ``device`` cannot run it."""
    if triton is None:
        raise BackendUnavailableError(
            "The 8-bit attention kernel (wan_core.kernels.int8_attention) needs Triton; install a CUDA build of "
            "torch (it ships Triton) or use attention='sdpa'."
        )
    if device.type == "cpu" and interpreted():
        return
    if device.type != "cuda" or torch.version.hip is not None:
        raise BackendUnavailableError(
            f"The 8-bit attention kernel (wan_core.kernels.int8_attention: INT8 QK^T, FP8 PV) needs an NVIDIA GPU; "
            f"the model is on {device}. Turn the 8-bit path off or use attention='sdpa'."
        )
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        raise BackendUnavailableError(
            f"The 8-bit attention kernel (wan_core.kernels.int8_attention) multiplies P V in FP8, which needs compute "
            f"capability 8.9 (Ada) or newer; this GPU is sm_{major}{minor}. Use attention='sdpa' or 'sageattention'."
        )


def quantize_qk(x: torch.Tensor, block: int, extra: float, smooth: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, S, H, d] -> (int8 [B, H, S, d], fp32 scales [B, H, ceil(S/block)] times ``extra``)."""
    batch, seq, heads, dim = x.shape
    if x.stride(-1) != 1:
        x = x.contiguous()
    mean = x.float().mean(dim=1).contiguous() if smooth else x  # [B, H, d]
    out = torch.empty(batch, heads, seq, dim, device=x.device, dtype=torch.int8)
    blocks = -(-seq // block)
    scale = torch.empty(batch, heads, blocks, device=x.device, dtype=torch.float32)
    grid = (blocks, batch * heads)
    _quant_blocks_kernel[grid](
        x, mean, out, scale, seq, heads, x.stride(0), x.stride(1), x.stride(2), extra,
        BLOCK=block, D=dim, SMOOTH=smooth, num_warps=4,  # pyright: ignore[reportCallIssue]  (triton types a launch as the kernel's signature, without launch options)
    )  # fmt: skip
    return out, scale


def quantize_v(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """v [B, S, H, d] -> (fp8 e4m3 [B, H, d, S], fp32 per-channel scales [B, H, d])."""
    batch, seq, heads, dim = v.shape
    if v.stride(-1) != 1:
        v = v.contiguous()
    scale = (v.abs().amax(dim=1).float() / P_SCALE).clamp_min(1e-8).contiguous()
    out = torch.empty(batch, heads, dim, seq, device=v.device, dtype=torch.float8_e4m3fn)
    grid = (triton.cdiv(seq, 64), batch * heads)
    _quant_v_kernel[grid](
        v, scale, out, seq, heads, v.stride(0), v.stride(1), v.stride(2), BLOCK=64, D=dim, num_warps=4,  # pyright: ignore[reportCallIssue]  (triton types a launch as the kernel's signature, without launch options)
    )  # fmt: skip
    return out, scale


def int8_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pv: str = "fp8", config: tuple[int, int, int, int] | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for q [B, Sq, H, d], k/v [B, Sk, H, d] (fp16/bf16) -> [B, Sq, H, d].

    ``pv``: "fp8" (P and V in e4m3) or "fp16" (P and V in fp16, as SageAttention 1; slower, more exact).
    ``config``: (BLOCK_M, BLOCK_N, warps, stages) to override the tuned default (benchmarks sweep it).
    """
    check_device(q.device)
    batch, sq, heads, dim = q.shape
    if dim not in (64, 128):
        raise BackendUnavailableError(f"The 8-bit attention kernel takes head dims 64 and 128; got {dim}.")
    sk = k.shape[1]
    q8, qs = quantize_qk(q, Q_BLOCK, LOG2E / math.sqrt(dim), smooth=False)
    k8, ks = quantize_qk(k, K_BLOCK, 1.0, smooth=True)
    if pv == "fp8":
        v_in, vs = quantize_v(v)
    else:
        v_in = v.to(q.dtype) if v.stride(-1) == 1 else v.to(q.dtype).contiguous()
        vs = qs  # unused
    out = torch.empty(q.shape, device=q.device, dtype=q.dtype)
    block_m, block_n, warps, stages = config or DEFAULT_CONFIG
    grid = (triton.cdiv(sq, block_m), batch * heads)
    _attn_kernel[grid](
        q8, k8, v_in, qs, ks, vs, out, sq, sk, heads, out.stride(0), out.stride(1), out.stride(2),
        v_in.stride(0), v_in.stride(1), v_in.stride(2),
        D=dim, BLOCK_M=block_m, BLOCK_N=block_n, QB=Q_BLOCK, KB=K_BLOCK, PV_FP8=pv == "fp8", PSCALE=P_SCALE,
        num_warps=warps, num_stages=stages,  # pyright: ignore[reportCallIssue]  (triton types a launch as the kernel's signature, without launch options)
    )  # fmt: skip
    return out


def int8_attention_fp16_pv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """:func:`int8_attention` with P V in fp16 (the ``attention="int8_fp16pv"`` backend)."""
    return int8_attention(q, k, v, pv="fp16")
