"""Sequence parallelism for the DiT: each rank of a group holds a contiguous share of the tokens.

Token i of the flattened (frame, row, column) sequence of S tokens lives on rank i // s,
with s = ceil(S / P) for a group of P ranks; the last shares are padded to s rows. The
RoPE table, per-token timesteps (TI2V) and VACE states are cut the same way as x, so
every per-token operation (modulation, cross-attention, FFN, head) runs locally.

Self-attention is the only place where tokens meet. Ulysses (the default when the heads
divide by P): one all-to-all turns [B, s, H, d] q/k/v into [B, P*s, H/P, d] (all tokens,
H/P heads), padding rows are dropped, the ordinary attention kernel runs, and a second
all-to-all returns [B, s, H, d]. Ring attention (see :mod:`.ring`) covers the other case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..dit.attention import attention
from ..dit.embeddings import TokenTable
from ..errors import ParallelError
from .options import ATTENTION_MODES
from .ring import ring_attention
from .timing import NO_TIMER, CommTimer


@dataclass(frozen=True)
class Shares:
    """How S tokens are cut into P shares of ``size`` rows (the last ones padded)."""

    tokens: int
    parts: int

    @property
    def size(self) -> int:
        return -(-self.tokens // self.parts)

    @property
    def padded(self) -> int:
        return self.size * self.parts

    def valid(self, part: int) -> int:
        """Real (unpadded) rows of share ``part``."""
        return max(0, min(self.size, self.tokens - part * self.size))


class SequenceParallel:
    """A :class:`~wan_core.dit.token_split.TokenSplit` over one process group."""

    def __init__(self, group: dist.ProcessGroup, mode: str = "auto", timer: CommTimer = NO_TIMER) -> None:
        if mode not in ATTENTION_MODES:
            raise ParallelError(f"Unknown sequence-parallel attention {mode!r}; use one of {ATTENTION_MODES}.")
        self.group = group
        self.size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        self.mode = mode
        self.timer = timer
        self.shares: Shares | None = None

    # ------------------------------------------------------------------ token layout

    def scatter(self, full: torch.Tensor, dim: int) -> torch.Tensor:
        """This rank's share of ``full`` along ``dim`` (zero rows appended where the sequence runs out)."""
        shares = self._shares()
        if full.shape[dim] != shares.tokens:
            raise ParallelError(
                f"Cannot split {full.shape[dim]} rows along dim {dim}: the forward has {shares.tokens}."
            )
        start = self.rank * shares.size
        part = full.narrow(dim, start, shares.valid(self.rank)) if shares.valid(self.rank) else full.narrow(dim, 0, 0)
        missing = shares.size - part.shape[dim]
        if missing:
            pad_shape = list(part.shape)
            pad_shape[dim] = missing
            part = torch.cat([part, part.new_zeros(pad_shape)], dim=dim)
        return part.contiguous()

    def scatter_inputs(self, x: torch.Tensor, e: torch.Tensor, e0: Any, rope: torch.Tensor, vace: Any):
        """See :meth:`TokenSplit.scatter_inputs`."""
        self.shares = Shares(int(x.shape[1]), self.size)
        x = self.scatter(x, 1)
        if e.shape[1] != 1:
            e = self.scatter(e, 1)
        if isinstance(e0, TokenTable):
            e0 = TokenTable(e0.values, self.scatter(e0.index, 1))
        rope = self.scatter(rope, 0)
        if vace is not None:
            vace.states = [self.scatter(state, 1) for state in vace.states]
        return x, e, e0, rope, vace

    def gather(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, s, C] on every rank -> [B, S, C] on every rank."""
        shares = self._shares()
        parts = [torch.empty_like(tokens) for _ in range(self.size)]
        with self.timer.measure():
            dist.all_gather(parts, tokens.contiguous(), group=self.group)
        return torch.cat(parts, dim=1)[:, : shares.tokens]

    def _shares(self) -> Shares:
        if self.shares is None:
            raise ParallelError("SequenceParallel used before scatter_inputs() told it the token count.")
        return self.shares

    # ------------------------------------------------------------------ attention

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str) -> torch.Tensor:
        """See :meth:`TokenSplit.attention`."""
        shares = self._shares()
        heads = q.shape[2]
        if self.mode == "ring" or (self.mode == "auto" and heads % self.size):
            valid = [shares.valid(j) for j in range(self.size)]
            return ring_attention(q, k, v, self.group, valid, self.timer)
        if heads % self.size:
            raise ParallelError(
                f"Ulysses attention splits the {heads} heads over {self.size} ranks, which does not divide; "
                "use attention 'ring' or 'auto', or a rank count that divides the heads."
            )
        return self._ulysses(q, k, v, backend, shares.tokens)

    def _ulysses(self, q, k, v, backend: str, tokens: int) -> torch.Tensor:
        q_all, k_all, v_all = (self._heads_to_tokens(t, tokens) for t in (q, k, v))  # each [B, S, H/P, d]
        return self._tokens_to_heads(attention(q_all, k_all, v_all, backend), q.shape[1])

    def _heads_to_tokens(self, local: torch.Tensor, tokens: int) -> torch.Tensor:
        """[B, s, H, d] (my tokens, all heads) -> [B, S, H/P, d] (all real tokens, my heads)."""
        p = self.size
        b, s, h, d = local.shape
        send = local.reshape(b, s, p, h // p, d).permute(2, 0, 1, 3, 4).contiguous()  # chunk j -> rank j
        recv = self._all_to_all(send)  # [P, B, s, H/P, d]: recv[j] = rank j's tokens
        return recv.transpose(0, 1).reshape(b, p * s, h // p, d)[:, :tokens]  # a view when B = 1

    def _tokens_to_heads(self, out: torch.Tensor, size: int) -> torch.Tensor:
        """[B, S, H/P, d] -> [B, s, H, d]: the attention output back to the token owners."""
        p = self.size
        b, tokens, hp, d = out.shape
        if tokens < p * size:
            out = F.pad(out, (0, 0, 0, 0, 0, p * size - tokens))
        send = out.reshape(b, p, size, hp, d).transpose(0, 1).contiguous()  # chunk j = rank j's tokens
        recv = self._all_to_all(send)  # [P, B, s, H/P, d]: recv[j] = my tokens, rank j's heads
        return recv.permute(1, 2, 0, 3, 4).reshape(b, size, p * hp, d)

    def _all_to_all(self, send: torch.Tensor) -> torch.Tensor:
        recv = torch.empty_like(send)
        with self.timer.measure():
            dist.all_to_all_single(recv, send, group=self.group)
        return recv
