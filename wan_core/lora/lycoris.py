"""LyCORIS LoHa and LoKr deltas (Hadamard and Kronecker products of small factors).

* LoHa: ``ΔW = scale · (w1_a @ w1_b) ⊙ (w2_a @ w2_b)``, ``scale = alpha / w1_b.shape[0]``.
* LoKr: ``ΔW = scale · kron(w1, w2)`` with each of w1, w2 stored whole (``lokr_w1``)
  or as two factors (``lokr_w1_a @ lokr_w1_b``); ``scale = alpha / r`` with r the
  rank of the factored one (w2's if both are), 1 when neither is factored or no alpha.

Only Linear weights ([out, in]); the Tucker variants (``hada_t1``, ``lokr_t2``) are
reported as unsupported. These deltas are always merged (a run-time adapter would
need the full ΔW anyway).
"""

from __future__ import annotations

import math
from collections.abc import Container

import torch

LOHA_PARTS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
LOKR_PARTS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")
Factors = dict[str, torch.Tensor]


def lycoris_kind(parts: Container[str]) -> str | None:
    """ "loha" / "lokr" when ``parts`` hold a complete set of factors, else None."""
    if all(p in parts for p in LOHA_PARTS):
        return "loha"
    has_w1 = "lokr_w1" in parts or ("lokr_w1_a" in parts and "lokr_w1_b" in parts)
    has_w2 = "lokr_w2" in parts or ("lokr_w2_a" in parts and "lokr_w2_b" in parts)
    return "lokr" if has_w1 and has_w2 else None


def lycoris_scale(kind: str, factors: Factors, alpha: float | None) -> float:
    if alpha is None:
        return 1.0
    if kind == "loha":
        return alpha / factors["hada_w1_b"].shape[0]
    rank = None
    if "lokr_w1" not in factors:
        rank = factors["lokr_w1_b"].shape[0]
    if "lokr_w2" not in factors:
        rank = factors["lokr_w2_b"].shape[0]
    return 1.0 if rank is None else alpha / rank


def _lokr_factor(factors: Factors, name: str, device, dtype) -> torch.Tensor:
    if name in factors:
        return factors[name].to(device=device, dtype=dtype)
    return factors[name + "_a"].to(device=device, dtype=dtype) @ factors[name + "_b"].to(device=device, dtype=dtype)


def lycoris_delta(kind: str, factors: Factors, device: torch.device | str) -> torch.Tensor:
    """ΔW in fp32 (scale not applied), shape [out, in]."""
    f32 = torch.float32
    if kind == "loha":
        w1 = factors["hada_w1_a"].to(device, f32) @ factors["hada_w1_b"].to(device, f32)
        w2 = factors["hada_w2_a"].to(device, f32) @ factors["hada_w2_b"].to(device, f32)
        return w1 * w2
    return torch.kron(_lokr_factor(factors, "lokr_w1", device, f32), _lokr_factor(factors, "lokr_w2", device, f32))


def _factor_shape(factors: Factors, name: str) -> tuple[int, int]:
    if name in factors:
        return int(factors[name].shape[0]), int(math.prod(factors[name].shape[1:]))
    return int(factors[name + "_a"].shape[0]), int(math.prod(factors[name + "_b"].shape[1:]))


def lycoris_shape(kind: str, factors: Factors) -> tuple[int, int]:
    """Shape of ΔW without computing it."""
    if kind == "loha":
        return int(factors["hada_w1_a"].shape[0]), int(factors["hada_w1_b"].shape[1])
    (a, b), (c, d) = _factor_shape(factors, "lokr_w1"), _factor_shape(factors, "lokr_w2")
    return a * c, b * d
