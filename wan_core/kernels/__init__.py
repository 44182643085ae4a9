"""Optional GPU kernels (Triton; imported lazily where used): VAE RMSNorm+SiLU, 8-bit attention, FP8 GEMMs.

Each module works without a GPU only as far as Triton's interpreter goes (tests run them
with ``TRITON_INTERPRET=1`` on CPU tensors); callers keep an eager fallback.
"""

from __future__ import annotations

import os

try:  # Triton ships with CUDA/ROCm builds of torch; never with CPU wheels.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None
    tl = None


def interpreted() -> bool:
    """True when Triton runs kernels in its CPU interpreter (tests)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def usable(x) -> bool:
    """Whether our Triton kernels run on tensor ``x`` in production (a GPU; tests patch this for the interpreter)."""
    if triton is None or os.environ.get("WAN_CORE_NO_TRITON", "") not in ("", "0"):
        return False
    return bool(x.is_cuda)
