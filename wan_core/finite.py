"""NaN / Inf guards: one cheap test used for weights, inputs, embeddings and the sampled latent.

A single NaN anywhere turns a whole video black, and silently: the decoder clamps it, the
encoder writes a valid file. So every place where numbers enter or are produced checks them
once, and stops with a :class:`~wan_core.errors.NonFiniteError` that names the likely cause.

The test is a sum: NaN and Inf propagate into any sum, so a finite sum proves every element
finite (one fast reduction, no boolean tensor). Only when the sum is not finite (a real NaN/Inf, or
finite float16 values whose sum overflows) the exact element-wise test decides. fp8 tensors (no
arithmetic on the CPU) are tested by bit pattern.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .devices import FP8_DTYPES
from .errors import NonFiniteError

# fp8 bit patterns (sign bit masked off): e4m3fn has no Inf, NaN = S.1111.111; e5m2 Inf/NaN = S.11111.xx
_FP8_NONFINITE_FROM = {torch.float8_e4m3fn: 0x7F, torch.float8_e5m2: 0x7C}


def all_finite(tensor: torch.Tensor) -> bool:
    """True when no element is NaN or +-Inf (integer, bool and empty tensors are always finite)."""
    if tensor.numel() == 0 or not tensor.dtype.is_floating_point and not tensor.dtype.is_complex:
        return True
    if tensor.dtype in FP8_DTYPES:
        bits = tensor.view(torch.uint8) & 0x7F
        return not bool((bits >= _FP8_NONFINITE_FROM[tensor.dtype]).any())
    if tensor.is_meta:
        return True
    if bool(torch.isfinite(tensor.sum())):  # in the tensor's dtype: sum(dtype=...) is 10-30x slower on CPU
        return True
    return bool(torch.isfinite(tensor).all())  # a real NaN/Inf, or a float16 sum that overflowed


def count_nonfinite(tensor: torch.Tensor) -> int:
    """Number of NaN/Inf elements (for messages; reads the whole tensor)."""
    if tensor.dtype in FP8_DTYPES:
        tensor = tensor.float()
    if not tensor.dtype.is_floating_point:
        return 0
    return int((~torch.isfinite(tensor)).sum())


def check_finite(tensor: torch.Tensor, what: str, fix: str) -> None:
    """Raise NonFiniteError("<what> contains N NaN/Inf values ... <fix>") unless ``tensor`` is finite."""
    if all_finite(tensor):
        return
    bad = count_nonfinite(tensor)
    raise NonFiniteError(f"{what} contains {bad} NaN/Inf value(s) of {tensor.numel()}: {fix}")


class LatentGuard:
    """Per-step check of the latent being sampled: one reduction on the device and one scalar read
    (a millisecond next to a DiT step), so a run that went NaN stops at once instead of finishing black."""

    def __init__(self, total_steps: int, expert_names: dict[int, str] | None = None) -> None:
        self.total = total_steps
        self.expert_names = expert_names or {}

    @classmethod
    def for_plan(cls, plan: Sequence[tuple[object, float]]) -> LatentGuard:
        """A guard for a sampler plan [(model, cfg)] per step; two models = the A14B high/low experts."""
        models: list[object] = []
        for model, _cfg in plan:
            if not any(model is m for m in models):
                models.append(model)
        names: dict[int, str] = (
            dict(zip((id(m) for m in models), ("high-noise", "low-noise"))) if len(models) == 2 else {}
        )
        return cls(len(plan), names)

    def check(self, latent: torch.Tensor, step: int, cfg: float, model: object = None) -> None:
        """Raise NonFiniteError naming ``step`` (1-based) when ``latent`` holds NaN/Inf."""
        if bool(torch.isfinite(latent.sum())):
            return
        expert = self.expert_names.get(id(model))
        where = f"step {step}/{self.total}" + (f" ({expert} expert)" if expert else "")
        raise NonFiniteError(
            f"The latent became NaN/Inf at {where}; the video would be black. Likely causes, most likely "
            f"first: a LoRA, if one is applied (lower its strength or remove it); the guidance scale (cfg "
            f"{cfg:g}: try 3 to 7); the model weights (a damaged or mismatched file, or fp16 overflow: "
            "load in bf16 or fp32 instead)."
        )
