"""Quantised weights: one type (:class:`QuantizedWeight`) behind scaled fp8, INT8 and GGUF.

* :mod:`.weight` - the type: dequantise, matmul (format GEMM hooks), move, take a LoRA delta;
* :mod:`.ggml` - GGML block formats (Q8_0 ... Q6_K) dequantised in torch;
* :mod:`.int8` - per-channel int8 storage and the ``torch._int_mm`` GEMM;
* :mod:`.gguf_file` - reading ``.gguf`` files; :mod:`.loading` - filling a model at load.

Only this package knows storage formats; the model sees ``WanLinear`` layers.
"""

from __future__ import annotations

from torch import nn

from .weight import DEQUANT, QuantizedWeight, matmul_names, register_matmul

__all__ = ["DEQUANT", "QuantizedWeight", "matmul_names", "register_matmul", "set_matmul", "weight_kinds"]


def set_matmul(model: nn.Module, name: str) -> int:
    """Compute every Linear layer of ``model`` with matmul ``name`` ("dequant", "int_mm", ...).

    Layers whose format has no such GEMM keep dequantising; returns the number of layers.
    """
    from ..errors import InputError
    from ..ops import WanLinear

    if name not in matmul_names():
        raise InputError(f"Unknown matmul {name!r}; use one of {', '.join(matmul_names())}.")
    layers = [m for m in model.modules() if isinstance(m, WanLinear)]
    for layer in layers:
        layer.matmul = name
    return len(layers)


def weight_kinds(model: nn.Module) -> dict[str, int]:
    """How many Linear layers hold each stored format ("bf16", "fp8", "int8", "Q4_K", ...)."""
    from ..ops import WanLinear

    counts: dict[str, int] = {}
    for m in model.modules():
        if isinstance(m, WanLinear):
            w = m.quantized_weight()
            label = w.ggml_type or (str(w.data.dtype).replace("torch.", "") if w.kind == "dense" else w.kind)
            counts[label] = counts.get(label, 0) + 1
    return counts
