"""Linear layer shared by the DiT and the text encoder.

Why a custom layer: weights may be *stored* in a format other than the compute dtype
(bf16 weights in an fp32 test, scaled fp8, int8 with per-channel scales, packed GGUF
blocks), and LoRA may be applied *at run time* without touching the stored weight.
Both are handled here, once, so every model gets them for free. What a stored format
means lives in one type, :class:`~wan_core.quant.weight.QuantizedWeight`; this layer
only keeps its tensors (so ``.to()``, block swap and ``state_dict`` move them as they are).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, Union

import torch
from torch import nn

from .quant.weight import DEQUANT, QuantizedWeight

if TYPE_CHECKING:
    from .kernels.fp8_linear import Fp8Rows

Adapter = Callable[[torch.Tensor], torch.Tensor]
LinearInput = Union[torch.Tensor, "Fp8Rows"]  # FP8 rows come from the 8-bit path's fused norms


class LinearKernel(Protocol):
    """A compute mode with its own weight format that replaces a WanLinear's matmul (the 8-bit path's
    :class:`~wan_core.kernels.fp8_linear.Fp8Linear`)."""

    def __call__(self, layer: WanLinear, x: LinearInput) -> torch.Tensor: ...

    def dense_input(self, x: LinearInput, dtype: torch.dtype) -> torch.Tensor:
        """``x`` as a plain tensor in ``dtype`` (run-time LoRA adapters take dense activations)."""
        ...

    def reset(self) -> None:
        """Forget derived weights (the layer moved or changed)."""
        ...


class WanLinear(nn.Module):
    """``y = x @ W^T + b + sum(adapter(x))``, computed in ``x.dtype``; ``W`` as stored (see QuantizedWeight).

    * ``weight``: the stored data: [out, in] float / fp8 / int8, or packed GGUF bytes (uint8).
    * ``scale_weight``: optional fp32 buffer: fp8 scalar scale or int8 per-row scales [out].
    * ``ggml_type``: the GGUF block type when ``weight`` holds packed blocks, else None.
    * ``matmul``: "dequant" (rebuild W per call) or a format's own GEMM (e.g. "int_mm" for int8).
    * ``adapters``: run-time additions (on-the-fly LoRA); each maps x -> [.., out].
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.scale_weight: torch.Tensor | None
        self.register_buffer("scale_weight", None)
        self.ggml_type: str | None = None
        self.matmul = DEQUANT
        self.adapters: list[Adapter] = []
        self.kernel: LinearKernel | None = None  # replaces the matmul: called as kernel(self, x)

    @property
    def weight_shape(self) -> tuple[int, int]:
        """The logical weight shape (out, in), whatever the storage."""
        return (self.out_features, self.in_features)

    def quantized_weight(self) -> QuantizedWeight:
        """The stored weight as the one quantised-weight type (a view of this layer's tensors)."""
        return QuantizedWeight(self.weight, self.scale_weight, self.weight_shape, self.ggml_type)

    def store_weight(self, weight: QuantizedWeight) -> None:
        """Hold ``weight`` from now on (fresh storage: tensors shared with a caller stay untouched)."""
        if tuple(weight.shape) != self.weight_shape:
            raise ValueError(f"weight of shape {tuple(weight.shape)} stored in a {self.weight_shape} Linear")
        self.weight = nn.Parameter(weight.data, requires_grad=False)
        self._buffers["scale_weight"] = weight.scale
        self.ggml_type = weight.ggml_type

    def set_scale(self, scale: torch.Tensor | None) -> None:
        """Attach (or remove) the per-tensor fp8 dequantisation scale as a buffer."""
        self._buffers["scale_weight"] = None if scale is None else scale.reshape(()).float()

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The effective weight [out, in] in ``dtype``."""
        return self.quantized_weight().dequantize(dtype)

    def forward(self, x: LinearInput) -> torch.Tensor:
        if self.kernel is not None:  # a compute mode that brings its own weight format (the 8-bit path)
            out = self.kernel(self, x)
            if self.adapters:
                dense = self.kernel.dense_input(x, out.dtype)
                for adapter in self.adapters:
                    out = out + adapter(dense)
            return out
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(x).__name__} input reaches a WanLinear only on the 8-bit path (with its kernel).")
        out = self.quantized_weight().linear(x, self.bias, self.matmul)
        for adapter in self.adapters:
            out = out + adapter(x)
        return out

    def extra_repr(self) -> str:
        w = self.quantized_weight()
        stored = w.ggml_type or str(self.weight.dtype)
        scaled = ", scaled" if self.scale_weight is not None else ""
        return f"in={self.in_features}, out={self.out_features}, weight={stored}{scaled}"
