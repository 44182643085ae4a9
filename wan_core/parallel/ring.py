"""Ring attention: exact self-attention over tokens split across ranks, for any head count.

Each rank keeps its queries [B, s, H, d]; the key/value chunks travel round the ring
(rank r sends to r+1 and receives from r-1 while it attends to the chunk it holds).
Partial results are merged with their log-sum-exp, which makes the sum exact:

    lse = log(e^lse_a + e^lse_b),   out = e^(lse_a - lse) out_a + e^(lse_b - lse) out_b

Used when the heads do not divide by the group size (Ulysses needs H % P == 0), or on request.
Padding rows of the last chunk (tokens >= S) are cut off before attending, so they never act as keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist

from ..errors import ParallelError
from .timing import CommTimer


def _flash_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[:2]
    return out, lse


def _flash_gpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)[:2]
    return out, lse


def _math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference path in fp32, queries in chunks so the score matrix stays small."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    outs, lses = [], []
    kf, vf = k.float(), v.float()
    for qc in q.float().split(4096, dim=2):
        scores = torch.matmul(qc, kf.transpose(-1, -2)) * scale
        lse = torch.logsumexp(scores, dim=-1)
        outs.append(torch.matmul(torch.exp(scores - lse[..., None]), vf))
        lses.append(lse)
    return torch.cat(outs, dim=2).to(q.dtype), torch.cat(lses, dim=2)


def _lse_kernel(q: torch.Tensor) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    if q.device.type == "cpu" and q.dtype in (torch.float32, torch.float64, torch.bfloat16):
        return _flash_cpu
    if q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16):
        return _flash_gpu
    return _math


def attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax attention of q [B, Sq, H, d] over k/v [B, Sk, H, d] -> (out [B, Sq, H, d], lse [B, Sq, H] fp32)."""
    out, lse = _lse_kernel(q)(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2), lse.transpose(1, 2).float()


def merge(
    acc: tuple[torch.Tensor, torch.Tensor] | None, part: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine two partial attentions (out fp32 [B, S, H, d], lse [B, S, H]) over disjoint key sets."""
    out_b, lse_b = part[0].float(), part[1]
    if acc is None:
        return out_b, lse_b
    out_a, lse_a = acc
    lse = torch.logaddexp(lse_a, lse_b)
    out = out_a * torch.exp(lse_a - lse)[..., None] + out_b * torch.exp(lse_b - lse)[..., None]
    return out, lse


def ring_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    group: dist.ProcessGroup,
    valid: list[int],
    timer: CommTimer,
) -> torch.Tensor:
    """Local q/k/v [B, s, H, d] of rank ``i`` of ``group`` -> attention over all ranks' keys [B, s, H, d].

    ``valid[j]``: how many of rank j's s rows are real tokens (the rest is padding).
    """
    size = dist.get_world_size(group)
    me = dist.get_rank(group)
    ranks = dist.get_process_group_ranks(group)
    send_to, recv_from = ranks[(me + 1) % size], ranks[(me - 1) % size]
    kv = torch.stack([k, v]).contiguous()
    acc = None
    for step in range(size):
        owner = (me - step) % size  # whose chunk ``kv`` holds now
        pending, incoming = [], None
        if step < size - 1:
            incoming = torch.empty_like(kv)
            ops = [dist.P2POp(dist.isend, kv, send_to, group), dist.P2POp(dist.irecv, incoming, recv_from, group)]
            pending = dist.batch_isend_irecv(ops)
        n = valid[owner]
        if n > 0:
            acc = merge(acc, attention_with_lse(q, kv[0, :, :n], kv[1, :, :n]))
        with timer.measure():
            for work in pending:
                work.wait()
        if incoming is not None:
            kv = incoming
    if acc is None:  # the shares give every rank at least one real token, so some chunk was real
        raise ParallelError(f"Ring attention over {size} ranks found no real key tokens (valid rows: {valid}).")
    return acc[0].to(q.dtype)
