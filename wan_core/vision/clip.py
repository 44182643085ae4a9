"""CLIP-H/14 vision tower (open-clip ``xlm-roberta-large-vit-huge-14``), built from official names.

Wan conditions on the hidden state after all but the last block (31 of 32), all tokens,
without the post-norm (WAN_SPEC section 6), so the last block, ``post_norm`` and ``head``
are never built. Tensors are [N, L, C] unless noted; L = 1 + (image / patch)^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from ..tensor_source import TensorSource

LAYER_NORM_EPS = 1e-5


def heads_for_width(width: int) -> int:
    """Attention heads, which CLIP checkpoints do not store.

    Rule (documented choice): head dim 80 when the width is a multiple of 80 (ViT-H/14:
    1280 -> 16 heads, the model Wan uses); else head dim 64 for widths >= 512 that are
    multiples of 64 (ViT-L 1024 -> 16, ViT-B 768 -> 12); else head dim 16 (the tiny
    test models: width 64 -> 4 heads). A folder's config.json overrides this rule.
    """
    if width % 80 == 0:
        return width // 80
    if width >= 512 and width % 64 == 0:
        return width // 64
    if width % 16 == 0:
        return width // 16
    raise CheckpointError(
        f"Cannot infer attention heads for a CLIP vision width of {width}; pass a folder "
        "with config.json (num_attention_heads)."
    )


@dataclass(frozen=True)
class ClipVisionConfig:
    """Vision-tower sizes read from tensor shapes (official names, no ``visual.`` prefix)."""

    width: int
    layers: int  # blocks in the file; the model runs layers - 1 of them
    heads: int
    patch: int
    image_size: int
    tokens: int
    mlp: int
    pre_norm: bool = True

    @classmethod
    def from_source(cls, src: TensorSource) -> ClipVisionConfig:
        width, _, patch, _ = src.shape("patch_embedding.weight")
        tokens = src.shape("pos_embedding")[-2]
        grid = math.isqrt(tokens - 1)
        if grid * grid != tokens - 1:
            raise CheckpointError(
                f"CLIP position embedding has {tokens} tokens; expected 1 + a square number (257 for "
                "CLIP-H/14 at 224 px). The file is damaged or not a ViT: load clip_vision_h.safetensors."
            )
        indices = {int(k.split(".")[1]) for k in src if k.startswith("transformer.")}
        if not indices or indices != set(range(len(indices))):
            raise CheckpointError(
                f"CLIP vision blocks are not numbered 0..N-1 (found {sorted(indices)[:8]}): the file is "
                "incomplete. Re-download it."
            )
        heads = (src.config or {}).get("num_attention_heads") or heads_for_width(width)
        return cls(
            width=width,
            layers=len(indices),
            heads=int(heads),
            patch=patch,
            image_size=grid * patch,
            tokens=tokens,
            mlp=src.shape("transformer.0.mlp.0.weight")[0],
            pre_norm="pre_norm.weight" in src,
        )


class ClipAttention(nn.Module):
    def __init__(self, cfg: ClipVisionConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.to_qkv = nn.Linear(cfg.width, 3 * cfg.width)  # rows ordered q, k, v
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape
        qkv = self.to_qkv(x).view(n, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [N, H, L, d]
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.proj(out.transpose(1, 2).reshape(n, length, width))


class ClipBlock(nn.Module):
    """Pre-LN block: x += attn(LN1 x); x += mlp(LN2 x); MLP = fc2(GELU_exact(fc1 x))."""

    def __init__(self, cfg: ClipVisionConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=LAYER_NORM_EPS)
        self.attn = ClipAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.width, eps=LAYER_NORM_EPS)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, cfg.mlp), nn.GELU(), nn.Linear(cfg.mlp, cfg.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClipVisionTower(nn.Module):
    """Normalised pixels [N, 3, S, S] -> penultimate hidden state [N, L, C] (no post-norm)."""

    def __init__(self, cfg: ClipVisionConfig) -> None:
        super().__init__()
        self.config = cfg
        self.patch_embedding = nn.Conv2d(3, cfg.width, cfg.patch, stride=cfg.patch, bias=False)
        self.cls_embedding = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embedding = nn.Parameter(torch.zeros(1, cfg.tokens, cfg.width))
        self.pre_norm = nn.LayerNorm(cfg.width, eps=LAYER_NORM_EPS) if cfg.pre_norm else nn.Identity()
        self.transformer = nn.ModuleList(ClipBlock(cfg) for _ in range(cfg.layers - 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(pixels).flatten(2).transpose(1, 2)  # [N, (S/p)^2, C]
        x = torch.cat([self.cls_embedding.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        x = self.pre_norm(x)
        for block in self.transformer:
            x = block(x)
        return x
