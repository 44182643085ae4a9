"""fp8 storage: ComfyUI "scaled fp8" files and plain fp8 weights.

Weights stay fp8 in memory; :class:`~wan_core.quant.weight.QuantizedWeight` (behind
:class:`~wan_core.ops.WanLinear`) dequantises them per call (``W = weight.to(compute) *
scale_weight``), like int8 and GGUF weights. This module converts between the
file layout (``<layer>.weight`` fp8 + ``<layer>.scale_weight`` fp32 scalar + a
``scaled_fp8`` marker) and modules, and writes such files (tests, tiny models,
re-quantising after a LoRA merge).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping

import torch
from torch import nn

from .checkpoints import SCALE_SUFFIXES, SCALED_FP8_MARKER
from .devices import is_fp8
from .finite import check_finite
from .ops import WanLinear
from .quant.weight import FP8_MAX, quantize_fp8
from .tensor_source import TensorSource

quantize_tensor = quantize_fp8  # the name the LoRA code and tests use


def quantize_state_dict(
    sd: Mapping[str, torch.Tensor],
    should_quantize: Callable[[str, torch.Tensor], bool],
    fp8_dtype: torch.dtype = torch.float8_e4m3fn,
    marker_prefix: str = "",
) -> dict[str, torch.Tensor]:
    """Write a ComfyUI-style scaled-fp8 state dict.

    Every ``X.weight`` with ``should_quantize(name, tensor)`` becomes fp8 with an
    ``X.scale_weight``; everything else is copied unchanged. The marker
    ``<marker_prefix>scaled_fp8`` is an empty tensor of the fp8 dtype.
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in sd.items():
        if name.endswith(".weight") and tensor.ndim == 2 and should_quantize(name, tensor):
            q, scale = quantize_tensor(tensor, fp8_dtype)
            out[name] = q
            out[name[: -len(".weight")] + ".scale_weight"] = scale
        else:
            out[name] = tensor
    out[marker_prefix + SCALED_FP8_MARKER] = torch.empty(0, dtype=fp8_dtype)
    return out


def dequantize_state_dict(
    sd: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """The reference weights a scaled-fp8 state dict stands for (for parity tests)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in sd.items():
        if name.endswith(SCALE_SUFFIXES) or name.endswith(SCALED_FP8_MARKER):
            continue
        if tensor.dtype in FP8_MAX:
            scale_key = name[: -len(".weight")] + ".scale_weight"
            scale = sd[scale_key].float() if scale_key in sd else torch.tensor(1.0)
            out[name] = tensor.to(dtype) * scale.to(dtype)
        else:
            out[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return out


def split_scales(keys: Iterable[str]) -> tuple[set[str], set[str]]:
    """Split tensor names into (model tensors, scale tensors + marker) for loading."""
    scales = {
        k for k in keys if k.endswith(SCALE_SUFFIXES) or k == SCALED_FP8_MARKER or k.endswith("." + SCALED_FP8_MARKER)
    }
    return set(keys) - scales, scales


def read_dequantized(src: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    """``src[key]``; an fp8 tensor comes back as fp32 ``weight * <layer>.scale_weight`` (scale 1 when absent)."""
    tensor = src[key]
    if not is_fp8(tensor.dtype):
        return tensor
    scale_key = key[: -len("weight")] + "scale_weight"
    return tensor.float() * (src[scale_key].float() if scale_key in src else 1.0)


def dequantizing_view(src: TensorSource, keys: Iterable[str], keep_fp8: Container[str] = frozenset()) -> TensorSource:
    """A lazy view of ``keys`` in which fp8 tensors outside ``keep_fp8`` read as fp32 ``weight * scale_weight``.

    For loaders whose layers (norms, embeddings, a whole CLIP tower) compute without
    WanLinear's per-call dequantisation; tensors in ``keep_fp8`` stay fp8 for WanLinear.
    A missing ``.scale_weight`` means scale 1 (plain fp8 files).
    """

    def read(key: str) -> torch.Tensor:
        return src[key] if key in keep_fp8 else read_dequantized(src, key)

    return TensorSource(
        {k: src.info(k) for k in keys}, read, config=src.config, identity=src.identity, description=src.description
    )


def attach_scales(module: nn.Module, src: Mapping[str, torch.Tensor], device: torch.device | str = "cpu") -> int:
    """Give each WanLinear whose ``<name>.scale_weight`` is in ``src`` its scale; returns the count.

    ``.scale_input`` (activation scales for fp8 matmul) is ignored: we compute in
    bf16/fp16/fp32, where it has no meaning.
    """
    count = 0
    for name, sub in module.named_modules():
        key = f"{name}.scale_weight"
        if isinstance(sub, WanLinear) and key in src:
            scale = src[key].to(device)
            check_finite(scale, f"The fp8 scale {key!r}", "the file is damaged; re-download it.")
            sub.set_scale(scale)
            count += 1
    return count
