"""umT5 encoder (the text encoder of every Wan model), built from official key names.

Equations (WAN_SPEC section 5.2), per layer i:
    x = x + Attn_i(RMSNorm(x)),  x = x + FFN_i(RMSNorm(x));  final RMSNorm.
Attention has no 1/sqrt(d) scaling and adds this layer's own relative position bias;
FFN(x) = fc2(fc1(x) * gelu_tanh(gate(x))). Tensors are [B, L, C] unless noted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from ..ops import WanLinear
from ..tensor_source import TensorSource


@dataclass(frozen=True)
class T5Config:
    """Encoder sizes, all read from tensor shapes (official names, see ``t5_keys``)."""

    d_model: int
    layers: int
    heads: int
    d_kv: int
    d_ff: int
    vocab: int
    num_buckets: int = 32
    max_distance: int = 128  # not stored in checkpoints; 128 for every T5/umT5 release
    eps: float = 1e-6

    @classmethod
    def from_source(cls, src: TensorSource) -> T5Config:
        """Infer the config from an official-layout source (shapes only, nothing is read)."""
        layers = _count_blocks(src)
        vocab, d_model = src.shape("token_embedding.weight")
        num_buckets, heads = src.shape("blocks.0.pos_embedding.embedding.weight")
        inner = src.shape("blocks.0.attn.q.weight")[0]
        if inner % heads:
            raise CheckpointError(
                f"umT5 attention width {inner} is not a multiple of the {heads} heads given by the "
                "relative-position table: the file is damaged or not a umT5 encoder."
            )
        d_ff = src.shape("blocks.0.ffn.fc1.weight")[0]
        return cls(
            d_model=d_model,
            layers=layers,
            heads=heads,
            d_kv=inner // heads,
            d_ff=d_ff,
            vocab=vocab,
            num_buckets=num_buckets,
        )


def _count_blocks(src: TensorSource) -> int:
    indices = {int(k.split(".")[1]) for k in src if k.startswith("blocks.") and k.split(".")[1].isdigit()}
    if not indices or indices != set(range(len(indices))):
        raise CheckpointError(
            f"umT5 blocks are not numbered 0..N-1 (found {sorted(indices)[:8]}): the file is incomplete. "
            "Re-download it."
        )
    return len(indices)


def relative_position_bucket(rel: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5 bucket of ``rel = key_pos - query_pos`` (int64, any shape).

    Half the buckets per direction; exact below ``num_buckets/4``, log-spaced up to
    ``max_distance``, capped at the last bucket of the direction.
    """
    half = num_buckets // 2
    bucket = (rel > 0).long() * half
    n = rel.abs()
    max_exact = half // 2
    n_safe = n.clamp_min(1).float()
    log_part = torch.log(n_safe / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    large = (max_exact + log_part.long()).clamp_max(half - 1)
    return bucket + torch.where(n < max_exact, n, large)


class T5RMSNorm(nn.Module):
    """``x * rsqrt(mean(x^2) + eps)`` in fp32, cast to the weight dtype, times weight."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * x32.to(self.weight.dtype)


class Table(nn.Embedding):
    """An embedding table that is never randomly initialised: the weights always come from a checkpoint.

    Skipping ``reset_parameters`` matters: on the meta device ``init.normal_`` imports
    torch._dynamo, which costs seconds in every process that loads a text encoder.
    """

    def reset_parameters(self) -> None:
        return None


class RelativeBias(nn.Module):
    """Per-layer bias table [buckets, heads] -> additive attention bias [1, H, Lq, Lk]."""

    def __init__(self, cfg: T5Config) -> None:
        super().__init__()
        self.num_buckets, self.max_distance = cfg.num_buckets, cfg.max_distance
        self.embedding = Table(cfg.num_buckets, cfg.heads)

    def forward(self, length: int) -> torch.Tensor:
        pos = torch.arange(length, device=self.embedding.weight.device)
        buckets = relative_position_bucket(pos[None, :] - pos[:, None], self.num_buckets, self.max_distance)
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0)


class T5Attention(nn.Module):
    def __init__(self, cfg: T5Config) -> None:
        super().__init__()
        inner = cfg.heads * cfg.d_kv
        self.heads = cfg.heads
        self.q = WanLinear(cfg.d_model, inner, bias=False)
        self.k = WanLinear(cfg.d_model, inner, bias=False)
        self.v = WanLinear(cfg.d_model, inner, bias=False)
        self.o = WanLinear(inner, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x [B, L, C]; bias [B or 1, H, L, L] (relative bias + key padding mask) -> [B, L, C]."""
        b, length, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # [B, L, H*d] -> [B, H, L, d]
            return t.view(b, length, self.heads, -1).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = (q @ k.transpose(-1, -2)) + bias  # no 1/sqrt(d): T5 folds it into the weights
        attn = F.softmax(scores.float(), dim=-1).to(v.dtype)
        out = (attn @ v).transpose(1, 2).reshape(b, length, -1)
        return self.o(out)


class T5FeedForward(nn.Module):
    def __init__(self, cfg: T5Config) -> None:
        super().__init__()
        self.gate = nn.Sequential(WanLinear(cfg.d_model, cfg.d_ff, bias=False), nn.GELU(approximate="tanh"))
        self.fc1 = WanLinear(cfg.d_model, cfg.d_ff, bias=False)
        self.fc2 = WanLinear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) * self.gate(x))


class T5Block(nn.Module):
    def __init__(self, cfg: T5Config) -> None:
        super().__init__()
        self.norm1 = T5RMSNorm(cfg.d_model, cfg.eps)
        self.attn = T5Attention(cfg)
        self.norm2 = T5RMSNorm(cfg.d_model, cfg.eps)
        self.ffn = T5FeedForward(cfg)
        self.pos_embedding = RelativeBias(cfg)

    def forward(self, x: torch.Tensor, mask_bias: torch.Tensor) -> torch.Tensor:
        """x [B, L, C]; mask_bias [B, 1, 1, L] (0 at real keys, dtype min at padding)."""
        bias = self.pos_embedding(x.shape[1]).to(x.dtype) + mask_bias
        x = _clamp_fp16(x + self.attn(self.norm1(x), bias))
        return _clamp_fp16(x + self.ffn(self.norm2(x)))


def _clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    """Keep fp16 activations finite (the official and HF encoders do the same)."""
    if x.dtype != torch.float16:
        return x
    limit = torch.finfo(torch.float16).max - 1000
    return x.clamp(-limit, limit)


class UMT5Encoder(nn.Module):
    """Token ids [B, L] (+ mask [B, L], 1 = real token) -> hidden states [B, L, d_model]."""

    def __init__(self, cfg: T5Config) -> None:
        super().__init__()
        self.config = cfg
        self.token_embedding = Table(cfg.vocab, cfg.d_model)
        self.blocks = nn.ModuleList(T5Block(cfg) for _ in range(cfg.layers))
        self.norm = T5RMSNorm(cfg.d_model, cfg.eps)
        self.embedding_scale: torch.Tensor | None = None  # set for an fp8-scaled embedding table

    def embed(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Row lookup that also works for an fp8 table (rows dequantised after gathering)."""
        rows = self.token_embedding.weight[ids].to(dtype)
        if self.embedding_scale is not None:
            rows = rows * self.embedding_scale.to(dtype)
        return rows

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        x = self.embed(ids, dtype)
        mask_bias = torch.zeros(mask.shape, device=x.device, dtype=dtype)
        mask_bias = mask_bias.masked_fill(mask == 0, torch.finfo(dtype).min)[:, None, None, :]
        for block in self.blocks:
            x = block(x, mask_bias)
        return self.norm(x)
