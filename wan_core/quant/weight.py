"""The one quantised-weight type: a Linear weight in any storage format, and what it can do.

A :class:`QuantizedWeight` is the stored tensors of one ``[out, in]`` Linear weight plus
what they mean. Its kind follows from the data:

* ``dense``: a float tensor (fp32/bf16/fp16), used as is;
* ``fp8``: e4m3fn/e5m2 values times an optional fp32 scalar ``scale`` (ComfyUI "scaled fp8");
* ``int8``: int8 values times an fp32 per-output-channel ``scale`` [out] (quantised at load);
* ``gguf``: packed GGML blocks (uint8) of type ``ggml_type`` (Q8_0, Q4_K, ...).

It is the only place that knows how to rebuild the weight (:meth:`dequantize`), multiply
by it (:meth:`linear`, where a format may bring its own GEMM, see :func:`register_matmul`),
move it (:meth:`to`) and take a LoRA delta (:meth:`with_delta`, re-quantising into the
same kind; GGUF blocks become Q8_0). :class:`~wan_core.ops.WanLinear` keeps the tensors
as its ``weight`` parameter and ``scale_weight`` buffer, so ``.to()``, block swap and
``state_dict`` move the quantised bytes unchanged; nothing else in the model needs to
know the format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..devices import is_fp8
from . import ggml
from .int8 import dequantize_int8, int_mm_linear, quantize_int8

FP8_MAX = {torch.float8_e4m3fn: 448.0, torch.float8_e5m2: 57344.0}
KINDS = ("dense", "fp8", "int8", "gguf")

MatmulFn = Callable[["QuantizedWeight", torch.Tensor, torch.Tensor | None], torch.Tensor | None]
_MATMULS: dict[tuple[str, str], MatmulFn] = {}
DEQUANT = "dequant"


def quantize_fp8(w: torch.Tensor, fp8_dtype: torch.dtype = torch.float8_e4m3fn) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor scaled fp8: (fp8 weight, fp32 scalar scale) with w ~= q * scale."""
    w32 = w.float()
    amax = w32.abs().max().clamp_min(1e-12)
    scale = (amax / FP8_MAX[fp8_dtype]).reshape(())
    q = (w32 / scale).clamp(-FP8_MAX[fp8_dtype], FP8_MAX[fp8_dtype]).to(fp8_dtype)
    return q, scale


def register_matmul(kind: str, name: str, fn: MatmulFn) -> None:
    """Let weights of ``kind`` compute ``linear`` with ``fn`` when a layer's ``matmul`` is ``name``.

    ``fn(weight, x, bias)`` returns the output, or None for inputs it cannot take (the
    caller then uses the dequantising path). This is the hook for format-specific GEMMs
    (int8 ``_int_mm`` here; an fp8 ``_scaled_mm`` can plug in the same way).
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown weight kind {kind!r}; use one of {KINDS}.")
    _MATMULS[(kind, name)] = fn


def matmul_names() -> tuple[str, ...]:
    """Every selectable matmul: ``dequant`` plus the registered format-specific ones."""
    return (DEQUANT, *sorted({name for _, name in _MATMULS}))


@dataclass(frozen=True)
class QuantizedWeight:
    """A Linear weight of logical ``shape`` (out, in) stored as ``data`` (+ ``scale``, ``ggml_type``)."""

    data: torch.Tensor
    scale: torch.Tensor | None
    shape: tuple[int, int]
    ggml_type: str | None = None

    @property
    def kind(self) -> str:
        if self.ggml_type is not None:
            return "gguf"
        if is_fp8(self.data.dtype):
            return "fp8"
        if self.data.dtype == torch.int8:
            return "int8"
        return "dense"

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def nbytes(self) -> int:
        """Bytes held (data + scale)."""
        extra = 0 if self.scale is None else self.scale.numel() * self.scale.element_size()
        return self.data.numel() * self.data.element_size() + extra

    @property
    def row_scales(self) -> torch.Tensor:
        """An int8 weight's per-output-channel scales [out] (they come with the data)."""
        if self.scale is None:
            raise ValueError(f"an int8 weight of shape {self.shape} without its per-channel scales")
        return self.scale

    def dequantize(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight [out, in] in ``dtype`` on the data's device."""
        if self.ggml_type is not None:
            return ggml.dequantize(self.data, self.ggml_type, self.shape, dtype)
        kind = self.kind
        if kind == "dense":
            return self.data if self.data.dtype == dtype else self.data.to(dtype)
        if kind == "fp8":
            w = self.data.to(dtype)
            return w if self.scale is None else w * self.scale.to(dtype)
        return dequantize_int8(self.data, self.row_scales, dtype)

    def linear(self, x: torch.Tensor, bias: torch.Tensor | None, matmul: str = DEQUANT) -> torch.Tensor:
        """``x @ W^T + bias`` in ``x.dtype``, through the format's own GEMM when ``matmul`` names one."""
        fn = _MATMULS.get((self.kind, matmul)) if matmul != DEQUANT else None
        if fn is not None:
            out = fn(self, x, bias)
            if out is not None:
                return out
        if bias is not None and bias.dtype != x.dtype:
            bias = bias.to(x.dtype)
        return F.linear(x, self.dequantize(x.dtype), bias)

    def to(self, device: torch.device | str, non_blocking: bool = False, copy: bool = False) -> QuantizedWeight:
        """The same weight on ``device`` (the stored bytes move as they are)."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking, copy=copy)

        scale = None if self.scale is None else move(self.scale)
        return QuantizedWeight(move(self.data), scale, self.shape, self.ggml_type)

    def with_delta(self, delta: torch.Tensor) -> QuantizedWeight:
        """``W + delta`` (delta fp32 [out, in] on this device), stored again in this weight's kind.

        fp8 gets a fresh per-tensor scale, int8 fresh per-channel scales, dense keeps its
        dtype; GGUF blocks are re-quantised as Q8_0 (near-lossless, ~8.5 bits per weight:
        use run-time LoRA to keep a smaller GGUF type's size).
        """
        return self.requantized(self.dequantize(torch.float32) + delta)

    def requantized(self, w: torch.Tensor) -> QuantizedWeight:
        """New float weights ``w`` [out, in] stored in this weight's kind (see :meth:`with_delta`)."""
        kind = self.kind
        if kind == "fp8":
            q, scale = quantize_fp8(w, self.data.dtype)
            return QuantizedWeight(q, scale, self.shape)
        if kind == "int8":
            return QuantizedWeight(*quantize_int8(w), self.shape)
        if kind == "gguf":
            return QuantizedWeight(ggml.quantize_q8_0(w), None, self.shape, "Q8_0")
        return QuantizedWeight(w.to(self.data.dtype), None, self.shape)


def _int8_int_mm(weight: QuantizedWeight, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    return int_mm_linear(x, weight.data, weight.row_scales, bias)


register_matmul("int8", "int_mm", _int8_int_mm)
