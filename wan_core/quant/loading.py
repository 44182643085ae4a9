"""Filling a model's Linear layers with quantised weights at load time (GGUF blocks, INT8).

Loaders build the model on the meta device; :func:`fill_quantized_linears` then stores
the Linear weights that stay quantised (one tensor at a time, straight onto the target
device), and the loader materialises everything else as usual. Rules:

* a GGUF block-quantised weight keeps its packed bytes (whatever ``storage`` says);
* ``storage == torch.int8``: every other Linear weight inside ``blocks.*`` is quantised
  to int8 with per-output-channel scales (fp8 files: from their dequantised values);
  embeddings and the head stay in the compute dtype, as with fp8 storage.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..errors import CheckpointError
from ..fp8 import read_dequantized
from ..ops import WanLinear
from ..tensor_source import TensorSource
from .gguf_file import read_packed
from .int8 import quantize_int8
from .weight import QuantizedWeight

log = logging.getLogger(__name__)

INT8_PREFIXES = ("blocks.",)


def linear_weights(model: nn.Module) -> dict[str, WanLinear]:
    """``"<module>.weight"`` -> the WanLinear that owns it."""
    return {f"{name}.weight": m for name, m in model.named_modules() if isinstance(m, WanLinear)}


def _quantized_weight(
    key: str, layer: WanLinear, src: TensorSource, storage: torch.dtype | None, device: torch.device
) -> QuantizedWeight | None:
    info = src.info(key)
    if tuple(info.shape) != layer.weight_shape:
        raise CheckpointError(
            f"Tensor {key!r} has shape {tuple(info.shape)} but the model built from this checkpoint's config "
            f"expects {layer.weight_shape}. The file mixes two model sizes: re-download it."
        )
    if info.ggml_type is not None:
        return QuantizedWeight(read_packed(info).to(device), None, layer.weight_shape, info.ggml_type)
    if storage == torch.int8 and key.startswith(INT8_PREFIXES):
        w = read_dequantized(src, key).to(device)
        return QuantizedWeight(*quantize_int8(w), layer.weight_shape)
    return None


def fill_quantized_linears(
    model: nn.Module, src: TensorSource, device: torch.device, storage: torch.dtype | None = None
) -> set[str]:
    """Store every Linear weight of ``src`` that stays quantised; returns the model tensor names filled.

    The names include the filled layers' ``scale_weight`` buffers (int8), so the caller
    can pass them to ``materialize`` as already present.
    """
    filled: set[str] = set()
    counts: dict[str, int] = {}
    for key, layer in linear_weights(model).items():
        if key not in src:
            continue
        weight = _quantized_weight(key, layer, src, storage, device)
        if weight is None:
            continue
        layer.store_weight(weight)
        filled.add(key)
        if weight.scale is not None:
            filled.add(key[: -len("weight")] + "scale_weight")
        label = weight.ggml_type or weight.kind
        counts[label] = counts.get(label, 0) + 1
    if counts:
        log.info("Quantised Linear weights: %s.", ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return filled
