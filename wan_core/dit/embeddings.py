"""Input embeddings and the output head of the Wan DiT (WAN_SPEC 1.3, 2.2, 2.7).

Official parameter names: ``time_embedding.{0,2}``, ``time_projection.1``,
``text_embedding.{0,2}``, ``img_emb.proj.{0,1,3,4}`` (+ ``img_emb.emb_pos`` for FLF2V),
``head.modulation`` and ``head.head``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..ops import WanLinear

log = logging.getLogger(__name__)


def sinusoid(t: torch.Tensor, freq_dim: int) -> torch.Tensor:
    """``[cos(t w_k), sin(t w_k)]``, w_k = 10000^(-k/half), computed in float64 -> [N, freq_dim] fp32."""
    half = freq_dim // 2
    work = torch.device("cpu") if t.device.type == "mps" else t.device  # MPS has no float64; these are tiny
    omega = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=work) / half)
    angles = torch.outer(t.to(work, torch.float64).reshape(-1), omega)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float().to(t.device)


def time_embedding_mlp(freq_dim: int, dim: int, device=None) -> nn.Sequential:
    """``time_embedding``: Linear(freq_dim, D) -> SiLU -> Linear(D, D)."""
    return nn.Sequential(WanLinear(freq_dim, dim, device=device), nn.SiLU(), WanLinear(dim, dim, device=device))


def time_projection_mlp(dim: int, device=None) -> nn.Sequential:
    """``time_projection``: SiLU -> Linear(D, 6D)."""
    return nn.Sequential(nn.SiLU(), WanLinear(dim, 6 * dim, device=device))


@dataclass
class TokenTable:
    """Per-token e0 kept compact: ``values`` [U, 6, D] fp32 for the U distinct timesteps, ``index`` [B, S].

    Equals the dense [B, S, 6, D] tensor ``values[index]`` (2 GB per sample for TI2V-5B at 720p)
    without materialising it; blocks gather their six [B, S, D] vectors from it.
    """

    values: torch.Tensor
    index: torch.Tensor


def embed_timesteps(
    t: torch.Tensor, freq_dim: int, time_embedding: nn.Module, time_projection: nn.Module
) -> tuple[torch.Tensor, torch.Tensor | TokenTable]:
    """t [B] or [B, S] (0..1000) -> e [B, 1|S, D] and e0 ([B, 1, 6, D] or a TokenTable), fp32.

    Per-token timesteps usually take a few distinct values (0 for a conditioning
    frame, t elsewhere), so the MLPs run once per distinct value.
    """
    per_token = t.reshape(t.shape[0], -1)
    if per_token.shape[1] == 1:  # one timestep per sample: no torch.unique (it would sync the GPU)
        e = time_embedding(sinusoid(per_token[:, 0], freq_dim))
        return e[:, None], time_projection(e).unflatten(-1, (6, -1))[:, None]
    values, index = torch.unique(per_token, return_inverse=True)
    e = time_embedding(sinusoid(values, freq_dim))
    e0 = time_projection(e).unflatten(-1, (6, -1))
    return e[index], TokenTable(e0, index)


def split_modulation(modulation: torch.Tensor, e0: torch.Tensor | TokenTable) -> list[torch.Tensor]:
    """``modulation [1, n, D] + e0`` split into n fp32 vectors, each [B, 1|S, D]."""
    if isinstance(e0, TokenTable):
        return [part[e0.index] for part in (modulation[0] + e0.values).unbind(1)]
    return list((modulation + e0).unbind(-2))


class TextEmbedding(nn.Sequential):
    """``text_embedding``: zero-pad/truncate to ``text_len`` tokens, then Linear -> GELU(tanh) -> Linear."""

    def __init__(self, text_dim: int, dim: int, text_len: int, device=None) -> None:
        super().__init__(
            WanLinear(text_dim, dim, device=device), nn.GELU(approximate="tanh"), WanLinear(dim, dim, device=device)
        )
        self.text_dim = text_dim
        self.text_len = text_len

    def pad(self, context: torch.Tensor | list | tuple, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
        """List of [L_i, text_dim] or a tensor [B|1, L, text_dim] -> [batch, text_len, text_dim] (exact zeros)."""
        items = list(context) if isinstance(context, (list, tuple)) else list(context.unbind(0))
        if len(items) == 1 and batch > 1:
            items = items * batch
        if len(items) != batch:
            raise InputError(f"Got {len(items)} text contexts for a latent batch of {batch}; pass 1 or {batch}.")
        out = torch.zeros(batch, self.text_len, self.text_dim, dtype=dtype, device=device)
        for i, item in enumerate(items):
            if item.ndim != 2 or item.shape[-1] != self.text_dim:
                raise InputError(
                    f"Text context {i} has shape {tuple(item.shape)}; expected [tokens, {self.text_dim}] "
                    "(use the text encoder that matches this model)."
                )
            if item.shape[0] > self.text_len:
                log.warning("Text context has %d tokens; truncating to %d.", item.shape[0], self.text_len)
                item = item[: self.text_len]
            out[i, : item.shape[0]] = item
        return out

    def embed(self, context, batch: int, dtype: torch.dtype, device) -> torch.Tensor:
        """-> [batch, text_len, D] in ``dtype``."""
        return self(self.pad(context, batch, dtype, device))


class ImageEmbedding(nn.Module):
    """CLIP tokens [B, N, clip_dim] -> [B, N, D]: LN -> Linear -> GELU -> Linear -> LN, in fp32.

    FLF2V adds ``emb_pos`` [1, 2*257, clip_dim] to the two images' tokens joined in one sequence.
    """

    def __init__(self, clip_dim: int, dim: int, pos_tokens: int | None, device=None) -> None:
        super().__init__()
        self.clip_dim = clip_dim
        self.proj = nn.Sequential(
            nn.LayerNorm(clip_dim, device=device),
            WanLinear(clip_dim, clip_dim, device=device),
            nn.GELU(),
            WanLinear(clip_dim, dim, device=device),
            nn.LayerNorm(dim, device=device),
        )
        if pos_tokens is not None:
            self.emb_pos = nn.Parameter(torch.zeros(1, pos_tokens, clip_dim, device=device))

    def forward(self, clip_fea: torch.Tensor, batch: int) -> torch.Tensor:
        x = clip_fea.float()
        pos = getattr(self, "emb_pos", None)
        if pos is not None and x.shape[1] != pos.shape[1] and x.shape[1] * 2 == pos.shape[1]:
            x = x.reshape(-1, pos.shape[1], x.shape[-1])  # [2B, 257, C] (first, last) -> [B, 514, C]
        if x.shape[-1] != self.clip_dim or (pos is not None and x.shape[1] != pos.shape[1]):
            want = pos.shape[1] if pos is not None else "N"
            raise InputError(
                f"clip_fea has shape {tuple(clip_fea.shape)}; this model expects [B, {want}, {self.clip_dim}] "
                "(CLIP-H penultimate features; FLF2V takes both images' tokens)."
            )
        if pos is not None:
            x = x + pos.float()
        if x.shape[0] == 1 and batch > 1:
            x = x.expand(batch, -1, -1)
        ln0, lin1, _, lin3, ln4 = self.proj
        x = _layer_norm_fp32(x, cast(nn.LayerNorm, ln0))
        x = lin3(F.gelu(lin1(x)))
        return _layer_norm_fp32(x, cast(nn.LayerNorm, ln4))


def _layer_norm_fp32(x: torch.Tensor, ln: nn.LayerNorm) -> torch.Tensor:
    """``ln`` applied in fp32 whatever dtype its weights are stored in."""
    return F.layer_norm(x, ln.normalized_shape, ln.weight.float(), ln.bias.float(), ln.eps)


class Head(nn.Module):
    """``head.head(LN(x) * (1 + scale) + shift)`` with (shift, scale) = head.modulation + e, all fp32."""

    def __init__(self, dim: int, out_features: int, eps: float, device=None) -> None:
        super().__init__()
        self.eps = eps
        self.modulation = nn.Parameter(torch.zeros(1, 2, dim, device=device))
        self.head = WanLinear(dim, out_features, device=device)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x [B, S, D] fp32, e [B, 1|S, D] fp32 -> [B, S, prod(patch) * out_dim] fp32."""
        shift, scale = (self.modulation + e.unsqueeze(-2)).unbind(-2)
        y = torch.addcmul(shift, F.layer_norm(x, (x.shape[-1],), eps=self.eps), 1 + scale)
        return self.head(y)
