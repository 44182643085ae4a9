"""Linear layer shared by the DiT and the text encoder.

Why a custom layer: weights may be *stored* in a dtype other than the compute
dtype (bf16 weights in an fp32 test, fp8 weights with a per-tensor scale), and
LoRA may be applied *at run time* without touching the stored weight. Both are
handled here, once, so every model gets them for free.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Adapter = Callable[[torch.Tensor], torch.Tensor]


class WanLinear(nn.Module):
    """``y = x @ (W * scale)^T + b + sum(adapter(x))``, computed in ``x.dtype``.

    * ``weight``: [out, in], any float dtype incl. fp8 (dequantised per call).
    * ``scale_weight``: optional fp32 scalar (ComfyUI "scaled fp8"); None means 1.
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
        self.adapters: list[Adapter] = []
        # Optional matmul provider (a compute mode with its own weight format, e.g. the 8-bit
        # path's wan_core.kernels.fp8_linear.Fp8Linear): called as kernel(self, x).
        self.kernel: Callable | None = None

    def set_scale(self, scale: torch.Tensor | None) -> None:
        """Attach (or remove) the per-tensor dequantisation scale as a buffer."""
        self._buffers["scale_weight"] = None if scale is None else scale.reshape(()).float()

    def dequantized_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The effective weight in ``dtype`` (fp8 -> dtype, times the scale)."""
        w = self.weight.to(dtype)
        if self.scale_weight is not None:
            w = w * self.scale_weight.to(dtype)
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None:
            out = self.kernel(self, x)
            dense = self.kernel.dense_input(x, out.dtype) if self.adapters else None
            for adapter in self.adapters:
                out = out + adapter(dense)
            return out
        dtype = x.dtype
        w = (
            self.weight
            if (self.weight.dtype == dtype and self.scale_weight is None)
            else self.dequantized_weight(dtype)
        )
        b = self.bias
        if b is not None and b.dtype != dtype:
            b = b.to(dtype)
        out = F.linear(x, w, b)
        for adapter in self.adapters:
            out = out + adapter(x)
        return out

    def extra_repr(self) -> str:
        scaled = ", scaled" if self.scale_weight is not None else ""
        return f"in={self.in_features}, out={self.out_features}, weight={self.weight.dtype}{scaled}"
