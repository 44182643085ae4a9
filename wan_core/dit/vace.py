"""VACE hint branch (WAN_SPEC 2.10), run interleaved with the main blocks.

``vace_blocks.j`` is a full block plus ``after_proj`` (and ``before_proj`` for j = 0).
Hints depend only on the patch-embedded main latent x0 and the VACE context, so
running vace block j right before it is needed (as ComfyUI does) equals the official
"all hints first" order while holding one hidden state per context instead of all
hints. Several VACE contexts each run their own chain and add ``scale_k * hint``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConditioningError
from ..ops import WanLinear
from .blocks import Context, WanBlock


class VaceBlock(WanBlock):
    """A WanBlock with the hint projections; same forward as the main block."""

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float, first: bool, device=None) -> None:
        super().__init__(dim, ffn_dim, num_heads, eps, image_kv=False, device=device)
        if first:
            self.before_proj = WanLinear(dim, dim, device=device)
        self.after_proj = WanLinear(dim, dim, device=device)


class VaceState:
    """Running hidden states [B, S, D] fp32 of each VACE context and their scales."""

    def __init__(self, states: list[torch.Tensor], scales: list[float]) -> None:
        self.states = states
        self.scales = scales

    def step(
        self, block: VaceBlock, e0: torch.Tensor, ctx: Context, rope: torch.Tensor, cdt: torch.dtype
    ) -> torch.Tensor:
        """Advance every context through ``block``; returns sum_k scale_k * hint_k [B, S, D] in cdt."""
        total = None
        for i, c in enumerate(self.states):
            c = block(c, e0, ctx, rope, cdt)
            self.states[i] = c
            hint = block.after_proj(c.to(cdt)) * self.scales[i]
            total = hint if total is None else total + hint
        assert total is not None  # start_vace makes at least one state
        return total


def as_list(value: object) -> list:
    """A list or tuple as a list; anything else as a one-element list."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def start_vace(
    patch_embed: nn.Conv3d,
    first_block: VaceBlock,
    vace_context: torch.Tensor | Sequence[torch.Tensor],
    vace_scale: float | Sequence[float],
    x0: torch.Tensor,
    cdt: torch.dtype,
) -> VaceState:
    """Embed each context [B|1, C_vace, T, h, w] and apply ``before_proj`` + x0 (x0 [B, S, D] fp32)."""
    contexts = as_list(vace_context)
    scales = as_list(vace_scale)
    if len(scales) == 1 and len(contexts) > 1:
        scales = scales * len(contexts)
    if len(scales) != len(contexts):
        raise ConditioningError(f"Got {len(contexts)} VACE contexts but {len(scales)} scales; pass one scale each.")
    states = []
    for ctx in contexts:
        if ctx.ndim != 5 or ctx.shape[1] != patch_embed.in_channels:
            raise ConditioningError(
                f"vace_context has shape {tuple(ctx.shape)}; expected [B, {patch_embed.in_channels}, T, h, w] "
                "(VACE: inactive latent 16 + reactive latent 16 + mask 64)."
            )
        c = patch_embed(ctx.to(device=x0.device, dtype=cdt)).flatten(2).transpose(1, 2).contiguous()
        if c.shape[1] != x0.shape[1]:
            raise ConditioningError(
                f"vace_context gives {c.shape[1]} tokens but the latent gives {x0.shape[1]}: "
                "it must have the latent's frames, height and width."
            )
        states.append(first_block.before_proj(c).float() + x0)
    return VaceState(states, [float(s) for s in scales])
