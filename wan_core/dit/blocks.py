"""Transformer block of the Wan DiT (WAN_SPEC 2.3 - 2.6), with official parameter names.

Precision (spec 2.8): the residual stream ``x`` is fp32; LayerNorm statistics,
modulation and the gated adds are fp32; every Linear runs in the compute dtype
``cdt`` (bf16 on GPUs, fp32 in tests); RMSNorm on q/k and RoPE run in fp32 and the
result is cast to ``cdt`` for the attention kernel.

Shapes: x [B, S, D] fp32; e0 [B, 1, 6, D] fp32 or a per-token TokenTable (Wan2.2 TI2V);
context tokens [B, L, D] in ``cdt``; rope factors [S, 1, d/2] complex64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.fp8_linear import quantize_rows
from ..ops import LinearInput, WanLinear
from . import fused
from .attention import attention
from .embeddings import TokenTable, split_modulation
from .rope import apply_rope
from .token_split import TokenSplit


class WanRMSNorm(nn.Module):
    """RMSNorm over the full width D (all heads jointly), statistics in fp32; weight [D] fp32."""

    def __init__(self, dim: int, eps: float, device=None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., D] any dtype -> fp32 [..., D]."""
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps)

    def heads(self, x: torch.Tensor, num_heads: int, rope: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, S, D] -> RMSNorm (+ RoPE when given) as [B, S, H, d] in x.dtype (fused on GPUs)."""
        if fused.enabled(x, x.dtype):
            out = fused.rms_norm_rope(x, self.weight, self.eps, rope, x.shape[-1] // num_heads)
            return out.unflatten(-1, (num_heads, -1))
        y = self(x).unflatten(-1, (num_heads, -1))
        return (apply_rope(y, rope) if rope is not None else y).to(x.dtype)


def layer_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Parameter-free LayerNorm in fp32."""
    return F.layer_norm(x.float(), (x.shape[-1],), eps=eps)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """``LN(x) * (1 + scale) + shift`` in fp32."""
    return torch.addcmul(shift, layer_norm(x, eps), 1 + scale)


def _cast(t: torch.Tensor, cdt: torch.dtype) -> LinearInput:
    """fp32 ``t`` in ``cdt``; ``cdt`` fp8 e4m3 means FP8 rows with per-token scales (the 8-bit path's GEMM input)."""
    return quantize_rows(t) if cdt == fused.FP8_ROWS else t.to(cdt)


def modulated_input(
    x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float, cdt: torch.dtype
) -> LinearInput:
    """``LN(x) * (1 + scale) + shift`` computed in fp32, returned in ``cdt`` (one fused pass on GPUs)."""
    if fused.enabled(x, cdt):
        return fused.norm_affine(x, 1 + scale, shift, eps, cdt)
    return _cast(modulate(x, shift, scale, eps), cdt)


def affine_input(x: torch.Tensor, norm: nn.LayerNorm, cdt: torch.dtype) -> LinearInput:
    """``norm3(x)`` (affine LayerNorm) computed in fp32, returned in ``cdt``."""
    weight, bias = norm.weight.float(), norm.bias.float()
    if fused.enabled(x, cdt):
        return fused.norm_affine(x, weight, bias, norm.eps, cdt)
    return _cast(F.layer_norm(x, (x.shape[-1],), weight, bias, norm.eps), cdt)


def residual_modulated(x, y, gate, shift, scale, eps: float, cdt: torch.dtype) -> LinearInput:
    """``x += y * gate`` (in place; gate None: ``x += y``), then :func:`modulated_input` (one pass on GPUs)."""
    if fused.enabled(x, cdt):
        return fused.residual_norm_affine(x, y, gate, 1 + scale, shift, eps, cdt)
    x.add_(y) if gate is None else x.addcmul_(y, gate)
    return modulated_input(x, shift, scale, eps, cdt)


def residual_affine(x, y, gate, norm: nn.LayerNorm, cdt: torch.dtype) -> LinearInput:
    """``x += y * gate`` (in place; gate None: ``x += y``), then :func:`affine_input` (one pass on GPUs)."""
    if fused.enabled(x, cdt):
        return fused.residual_norm_affine(x, y, gate, norm.weight.float(), norm.bias.float(), norm.eps, cdt)
    x.add_(y) if gate is None else x.addcmul_(y, gate)
    return affine_input(x, norm, cdt)


class FeedForward(nn.Sequential):
    """``ffn``: Linear -> GELU(tanh) -> Linear (official names ffn.0 / ffn.2); the GELU runs in the GEMM epilogue."""

    def __init__(self, dim: int, ffn_dim: int, device=None) -> None:
        super().__init__(
            WanLinear(dim, ffn_dim, device=device), nn.GELU(approximate="tanh"), WanLinear(ffn_dim, dim, device=device)
        )

    def forward(self, input: LinearInput) -> torch.Tensor:  # (nn.Sequential's parameter name)
        if self[2].kernel is not None:  # 8-bit path: GELU fused into the FP8 quantisation of ffn.2's input
            return self[2](quantize_rows(self[0](input), gelu=True))
        if not isinstance(input, torch.Tensor):
            raise TypeError("FP8 rows reach the FFN only on the 8-bit path (WanDiT.set_fast_8bit).")
        return self[2](fused.linear_gelu(self[0], input))


@dataclass
class Context:
    """Embedded conditioning shared by all blocks of one forward: text [B, 512, D], image [B, Li, D] or None."""

    text: torch.Tensor
    image: torch.Tensor | None = None


class AttentionProjections(nn.Module):
    """The parameters both attentions share: q, k, v, o (D -> D, bias) and RMSNorms on q and k."""

    def __init__(self, dim: int, num_heads: int, eps: float, device=None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.backend = "sdpa"
        self.q = WanLinear(dim, dim, device=device)
        self.k = WanLinear(dim, dim, device=device)
        self.v = WanLinear(dim, dim, device=device)
        self.o = WanLinear(dim, dim, device=device)
        self.norm_q = WanRMSNorm(dim, eps, device=device)
        self.norm_k = WanRMSNorm(dim, eps, device=device)


class SelfAttention(AttentionProjections):
    """Self-attention over all video tokens with 3-D RoPE on q and k.

    With ``sequence_parallel`` set, x holds this rank's share of the tokens and the hook
    attends over the whole sequence (all-to-all over heads, or ring attention).
    """

    sequence_parallel: TokenSplit | None = None

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        """x [B, S, D] in cdt -> [B, S, D] in cdt; q/k get RMSNorm then RoPE (fp32), then cdt."""
        q = self.norm_q.heads(self.q(x), self.num_heads, rope)
        k = self.norm_k.heads(self.k(x), self.num_heads, rope)
        v = self.v(x).unflatten(-1, (self.num_heads, -1))
        attend = attention if self.sequence_parallel is None else self.sequence_parallel.attention
        return self.o(attend(q, k, v, self.backend).flatten(-2))


class CrossAttention(AttentionProjections):
    """Text cross-attention; with ``image_kv`` also the I2V image branch (k_img/v_img/norm_k_img).

    I2V: ``out = Attn(q, k_txt, v_txt) + Attn(q, k_img, v_img)`` summed before ``o`` (spec 2.6).
    """

    def __init__(self, dim: int, num_heads: int, eps: float, image_kv: bool, device=None) -> None:
        super().__init__(dim, num_heads, eps, device=device)
        if image_kv:
            self.k_img = WanLinear(dim, dim, device=device)
            self.v_img = WanLinear(dim, dim, device=device)
            self.norm_k_img = WanRMSNorm(dim, eps, device=device)

    def context_projections(self) -> list[WanLinear]:
        """The Linears that read the text/image context (k, v; k_img, v_img), not the video tokens."""
        return [self.k, self.v, *([self.k_img, self.v_img] if hasattr(self, "k_img") else [])]

    def forward(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """x [B, S, D] cdt; ctx tokens cdt -> [B, S, D] cdt."""
        heads = (self.num_heads, -1)
        q = self.norm_q.heads(self.q(x), self.num_heads)
        k = self.norm_k.heads(self.k(ctx.text), self.num_heads)
        out = attention(q, k, self.v(ctx.text).unflatten(-1, heads), self.backend)
        if ctx.image is not None and hasattr(self, "k_img"):
            k_img = self.norm_k_img.heads(self.k_img(ctx.image), self.num_heads)
            v_img = self.v_img(ctx.image).unflatten(-1, heads)
            out = out + attention(q, k_img, v_img, self.backend)
        return self.o(out.flatten(-2))


class WanBlock(nn.Module):
    """One DiT block (official ``WanAttentionBlock``): modulated self-attn, cross-attn, modulated FFN."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float, image_kv: bool, device=None) -> None:
        super().__init__()
        self.eps = eps
        self.fp8_inputs = False  # 8-bit path: the norms hand FP8 rows to the Linears (see WanDiT.set_fast_8bit)
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim, device=device))
        self.self_attn = SelfAttention(dim, num_heads, eps, device=device)
        self.norm3 = nn.LayerNorm(dim, eps=eps, elementwise_affine=True, device=device)
        self.cross_attn = CrossAttention(dim, num_heads, eps, image_kv, device=device)
        self.ffn = FeedForward(dim, ffn_dim, device=device)

    def forward(
        self, x: torch.Tensor, e0: torch.Tensor | TokenTable, ctx: Context, rope: torch.Tensor, cdt: torch.dtype
    ) -> torch.Tensor:
        """x [B, S, D] fp32 -> fp32; e0 [B, 1, 6, D] fp32 or a per-token TokenTable."""
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = split_modulation(self.modulation, e0)
        adt = fused.FP8_ROWS if self.fp8_inputs else cdt  # what the norms hand to the Linears
        # The residual stream x (fp32, owned by the forward pass) is updated in place; each
        # residual update is fused with the norm that reads x next.
        # 1. Self-attention (modulated, gated)
        y = self.self_attn(modulated_input(x, shift_sa, scale_sa, self.eps, adt), rope)
        # 2. Cross-attention (affine LayerNorm, no modulation, no gate)
        y = self.cross_attn(residual_affine(x, y, gate_sa, self.norm3, adt), ctx)
        # 3. Feed-forward (modulated, gated)
        y = self.ffn(residual_modulated(x, y, None, shift_ff, scale_ff, self.eps, adt))
        return x.addcmul_(y, gate_ff)
