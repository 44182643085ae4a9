"""The VAE's ``SiLU(RMSNorm(x))`` in one pass, written straight into the next conv's input buffer.

``RMSNorm`` here is the VAE's: ``x / max(||x||_2 over C, 1e-12) * sqrt(C) * gamma``. The eager
path upcasts to fp32 and allocates five full-size temporaries; this kernel reads x once per
pass (twice in all: sum of squares, then normalise), keeps fp32 in registers and writes
the compute dtype once, into a view (the causal conv's frame buffer), so the conv input
needs no ``cat`` or ``pad`` copy either.
"""

from __future__ import annotations

import torch

from . import tl, triton

NORM_EPS = 1e-12

if triton is not None:

    @triton.jit
    def _rms_silu_kernel(
        X, G, OUT, P, x_sb, x_sc, x_sp, o_sb, o_sc, o_sp, scale, eps,
        C: tl.constexpr, SILU: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
    ):  # fmt: skip
        b = tl.program_id(1).to(tl.int64)
        p = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
        pm = p < P
        xb = X + b * x_sb
        acc = tl.zeros([BLOCK_P], dtype=tl.float32)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            m = (c < C)[:, None] & pm[None, :]
            v = tl.load(xb + c[:, None] * x_sc + p[None, :] * x_sp, mask=m, other=0.0).to(tl.float32)
            acc += tl.sum(v * v, axis=0)
        inv = scale / tl.maximum(tl.sqrt(acc), eps)
        ob = OUT + b * o_sb
        for c0 in range(0, C, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            cm = c < C
            m = cm[:, None] & pm[None, :]
            v = tl.load(xb + c[:, None] * x_sc + p[None, :] * x_sp, mask=m, other=0.0).to(tl.float32)
            g = tl.load(G + c, mask=cm, other=0.0).to(tl.float32)
            y = v * inv[None, :] * g[:, None]
            if SILU:
                y = y * tl.sigmoid(y)
            tl.store(ob + c[:, None] * o_sc + p[None, :] * o_sp, y.to(OUT.dtype.element_ty), mask=m)


def position_stride(t: torch.Tensor) -> int | None:
    """The one stride that walks the flattened (T, H, W) positions of [B, C, T, H, W], or None."""
    _, _, frames, height, width = t.shape
    s_t, s_h, s_w = t.stride()[2:]
    ok = (height == 1 or s_h == width * s_w) and (frames == 1 or s_t == height * width * s_w)
    return s_w if ok else None


def rms_norm_silu_into(x: torch.Tensor, gamma: torch.Tensor, out: torch.Tensor, silu: bool = True) -> bool:
    """Write ``SiLU(RMSNorm(x))`` (x [B, C, T, H, W]) into ``out`` (same shape, any strides); False if unsupported."""
    sp_x, sp_o = position_stride(x), position_stride(out)
    if sp_x is None or sp_o is None or out.shape != x.shape:
        return False
    batch, channels = x.shape[:2]
    positions = x.shape[2] * x.shape[3] * x.shape[4]
    channels_fastest = x.stride(1) == 1
    block_c, block_p = (64, 32) if channels_fastest else (16, 128)
    grid = (triton.cdiv(positions, block_p), batch)
    _rms_silu_kernel[grid](
        x,
        gamma.reshape(-1),
        out,
        positions,
        x.stride(0),
        x.stride(1),
        sp_x,
        out.stride(0),
        out.stride(1),
        sp_o,
        float(channels) ** 0.5,
        NORM_EPS,
        C=channels,
        SILU=silu,
        BLOCK_C=block_c,
        BLOCK_P=block_p,
        num_warps=4,  # pyright: ignore[reportCallIssue]  (triton types a launch as the kernel's signature, without launch options)
    )
    return True
