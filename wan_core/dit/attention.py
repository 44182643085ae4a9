"""The one attention entry point of the DiT, with optional kernels.

``attention(q, k, v, backend)`` takes and returns [B, S, H, d] (no mask, softmax scale
1/sqrt(d)). Backends:

* ``"sdpa"``: torch.nn.functional.scaled_dot_product_attention (always available;
  on CUDA it uses the flash / cuDNN / memory-efficient kernels itself).
* ``"flash_attn"``: flash-attn 3 (``flash_attn_interface``) or 2 (``flash_attn``).
* ``"sageattention"``: SageAttention (int8 QK; approximate, so never picked by auto).
* ``"auto"``: flash-attn 3 when installed and the tensors are on CUDA, else SDPA.

Optional packages are imported lazily, only when asked for. Kernels that only take
fp16/bf16 get bf16 copies for fp32 inputs (as the official code does) and their
output is cast back. On a non-CUDA device an explicit CUDA backend falls back to
SDPA with a one-time warning.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..errors import BackendUnavailableError

log = logging.getLogger(__name__)

AttnFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

ALIASES = {
    "sdpa": "sdpa",
    "torch": "sdpa",
    "flash": "flash_attn",
    "flash_attn": "flash_attn",
    "flash-attn": "flash_attn",
    "flash_attn_3": "flash_attn_3",
    "sage": "sageattention",
    "sageattention": "sageattention",
    "auto": "auto",
}
PIP_NAMES = {
    "flash_attn": "flash-attn",
    "flash_attn_3": "flash-attn 3 (hopper build)",
    "sageattention": "sageattention",
}
_warned: set[str] = set()


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA on [B, S, H, d] views (transposed to [B, H, S, d] without copies)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def _half_inputs(q, k, v):
    if q.dtype in (torch.float16, torch.bfloat16):
        return q, k.to(q.dtype), v.to(q.dtype)
    return q.to(torch.bfloat16), k.to(torch.bfloat16), v.to(torch.bfloat16)


@lru_cache(maxsize=None)
def _load(name: str) -> AttnFn | None:
    """Import an optional kernel; None when it is not installed."""
    try:
        if name == "flash_attn_3":
            fn = importlib.import_module("flash_attn_interface").flash_attn_func
        elif name == "flash_attn":
            fn = importlib.import_module("flash_attn").flash_attn_func
        elif name == "sageattention":
            sage = importlib.import_module("sageattention").sageattn
            return lambda q, k, v: sage(q, k, v, tensor_layout="NHD", is_causal=False)
        else:
            return None
    except (ImportError, AttributeError, OSError) as exc:
        log.debug("attention backend %s unavailable: %s", name, exc)
        return None

    def call(q, k, v):
        out = fn(q, k, v)
        return out[0] if isinstance(out, tuple) else out  # flash-attn 3 may return (out, lse)

    return call


def _kernel(name: str) -> AttnFn:
    fn = _load(name)
    if fn is None and name == "flash_attn":
        fn = _load("flash_attn_3")
    if fn is None:
        raise BackendUnavailableError(
            f"Attention backend {name!r} was asked for but is not installed. Install it with "
            f"`pip install {PIP_NAMES.get(name, name)}`, or use attention='sdpa' (always available)."
        )

    def run(q, k, v):
        hq, hk, hv = _half_inputs(q, k, v)
        return fn(hq, hk, hv).to(q.dtype)

    return run


def normalize_backend(name: str | None) -> str:
    key = (name or "auto").lower()
    if key not in ALIASES:
        raise BackendUnavailableError(f"Unknown attention backend {name!r}; use one of {', '.join(sorted(ALIASES))}.")
    return ALIASES[key]


def check_backend(name: str | None) -> str:
    """Normalise a backend name and fail now (not mid-run) when an explicit kernel is missing."""
    backend = normalize_backend(name)
    if backend not in ("sdpa", "auto"):
        _kernel(backend)
    return backend


def select(backend: str, device: torch.device) -> AttnFn:
    """The attention function for a normalised backend name on ``device``."""
    if backend == "sdpa":
        return sdpa
    if device.type != "cuda":
        if backend != "auto" and backend not in _warned:
            _warned.add(backend)
            log.warning("Attention backend %s needs CUDA; using SDPA on %s.", backend, device.type)
        return sdpa
    if backend == "auto":
        return _kernel("flash_attn_3") if _load("flash_attn_3") is not None else sdpa
    return _kernel(backend)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for q [B, Sq, H, d], k/v [B, Sk, H, d] -> [B, Sq, H, d]."""
    return select(backend, q.device)(q, k, v)
