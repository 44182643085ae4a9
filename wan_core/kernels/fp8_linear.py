"""FP8 GEMMs for the opt-in 8-bit path: per-token activation scales, per-channel weight scales.

``y = (a_fp8 * s_a) @ (w_fp8 * s_w)^T + b`` through ``torch._scaled_mm`` with row-wise
scales (cuBLASLt/CUTLASS FP8 kernels; 1.76x the bf16 rate at 14B FFN shapes on an H200).

* Weights: one scale per output channel, ``s_w = amax(|W[o, :]|) / 448``, made once from the
  layer's weight (fp8 checkpoints with a per-tensor scale are used as stored). A layer's
  weight changed in place (merged LoRA) is re-quantised on the next call.
* Activations: one scale per token. The DiT's fused norm kernels write :class:`Fp8Rows`
  directly (the quantisation costs no extra pass); other inputs (attention output, the
  text context, the FFN's GELU) go through :func:`quantize_rows` (GELU fused into it).

:class:`Fp8Linear` is the hook a :class:`~wan_core.ops.WanLinear` calls when its
``kernel`` is set. Needs a CUDA GPU of compute capability 9.0+ (row-wise scaled FP8 GEMMs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ..errors import BackendUnavailableError
from . import tl, triton, usable


class ScaledLinear(Protocol):
    """What the FP8 hook reads of its layer (a :class:`~wan_core.ops.WanLinear`): the stored weight,
    its optional fp8 scale, the bias."""

    @property
    def weight(self) -> torch.Tensor: ...

    @property
    def scale_weight(self) -> torch.Tensor | None: ...

    @property
    def bias(self) -> torch.Tensor | None: ...


FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
FAST_ACCUM = True  # Hopper FP8 tensor cores' fast accumulation (measured on the H200: see benchmarks/README.md)

if triton is not None:

    @triton.jit
    def _gelu_tanh(x):
        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1.0 + (2.0 * tl.sigmoid(2.0 * inner) - 1.0))

    @triton.jit
    def _quant_rows_kernel(X, OUT, SCALE, K, GELU: tl.constexpr, BLOCK: tl.constexpr):
        """One row of x [M, K] -> fp8 row and its scale (GELU(tanh) first when asked)."""
        row = tl.program_id(0).to(tl.int64)
        amax = tl.zeros([BLOCK], dtype=tl.float32)
        for k0 in range(0, K, BLOCK):
            c = k0 + tl.arange(0, BLOCK)
            v = tl.load(X + row * K + c, mask=c < K, other=0.0).to(tl.float32)
            if GELU:
                v = _gelu_tanh(v)
            amax = tl.maximum(amax, tl.abs(v))
        scale = tl.maximum(tl.max(amax, axis=0), 1e-12) / 448.0
        for k0 in range(0, K, BLOCK):
            c = k0 + tl.arange(0, BLOCK)
            v = tl.load(X + row * K + c, mask=c < K, other=0.0).to(tl.float32)
            if GELU:
                v = _gelu_tanh(v)
            tl.store(OUT + row * K + c, (v / scale).to(OUT.dtype.element_ty), mask=c < K)
        tl.store(SCALE + row, scale)


@dataclass
class Fp8Rows:
    """An activation [..., K] as fp8 e4m3 rows with one fp32 scale per row (``data * scale``)."""

    data: torch.Tensor
    scale: torch.Tensor  # [..., 1] fp32

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    @property
    def device(self) -> torch.device:
        return self.data.device

    def dequantize(self, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return (self.data.float() * self.scale).to(dtype)


def quantize_rows_eager(x: torch.Tensor, gelu: bool = False) -> Fp8Rows:
    """The reference of :func:`quantize_rows` in plain torch ops (and its fallback)."""
    v = x.float()
    if gelu:
        v = torch.nn.functional.gelu(v, approximate="tanh")
    scale = v.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / FP8_MAX
    return Fp8Rows((v / scale).to(FP8), scale)


def quantize_rows(x: torch.Tensor, gelu: bool = False) -> Fp8Rows:
    """x [..., K] (any float) -> :class:`Fp8Rows`, one pass of a Triton kernel (GELU(tanh) first if asked)."""
    if not usable(x):
        return quantize_rows_eager(x, gelu)
    x = x.contiguous()
    k = x.shape[-1]
    out = torch.empty(x.shape, device=x.device, dtype=FP8)
    scale = torch.empty(*x.shape[:-1], 1, device=x.device, dtype=torch.float32)
    rows = x.numel() // k if k else 0
    if rows:
        _quant_rows_kernel[(rows,)](x, out, scale, k, GELU=gelu, BLOCK=1024, num_warps=4)  # pyright: ignore[reportCallIssue]  (triton types a launch as the kernel's signature, without launch options)
    return Fp8Rows(out, scale)


def check_device(device: torch.device) -> None:
    """Raise a BackendUnavailableError naming the FP8 GEMM path when ``device`` cannot run it."""
    if device.type != "cuda" or torch.version.hip is not None:
        raise BackendUnavailableError(
            "The 8-bit path's FP8 GEMMs (wan_core.kernels.fp8_linear: torch._scaled_mm with row-wise scales) need an "
            f"NVIDIA GPU; the model is on {device}. Turn the 8-bit option off."
        )
    major, minor = torch.cuda.get_device_capability(device)
    if major < 9:
        raise BackendUnavailableError(
            "The 8-bit path's FP8 GEMMs (wan_core.kernels.fp8_linear: torch._scaled_mm with per-token and per-channel "
            f"scales) need compute capability 9.0 (Hopper) or newer; this GPU is sm_{major}{minor}. Turn the 8-bit "
            "option off (fp8 weight storage still works: weight_dtype fp8_e4m3fn)."
        )


class Fp8Linear:
    """A WanLinear's matmul in FP8 (the layer's ``kernel`` hook, a :class:`~wan_core.ops.LinearKernel`):
    ``__call__(layer, x)`` -> [..., out]."""

    def __init__(self, out_dtype: torch.dtype) -> None:
        self.out_dtype = out_dtype
        self.weight: torch.Tensor | None = None  # fp8 [out, in]
        self.scale: torch.Tensor | None = None  # fp32 [1, out]
        self.bias: torch.Tensor | None = None
        self.bias_in_gemm = True
        self._source: tuple[int, int] | None = None

    def reset(self) -> None:
        """Drop the FP8 weight copy (the model moved); the next call quantises again where the weight is."""
        self.weight = self.scale = self.bias = None
        self._source = None

    def refresh(self, layer: ScaledLinear) -> None:
        """(Re-)quantise ``layer.weight`` per output channel (fp8 e4m3 weights with a per-tensor scale as stored)."""
        w, scale_weight = layer.weight, layer.scale_weight
        if w.dtype == FP8:
            self.weight = w
            per_tensor = scale_weight.float() if scale_weight is not None else torch.ones((), device=w.device)
            self.scale = per_tensor.reshape(1, 1).expand(1, w.shape[0]).contiguous()
        else:
            wf = w.float() * (scale_weight.float() if scale_weight is not None else 1.0)
            s = wf.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / FP8_MAX
            self.weight = (wf / s).to(FP8)
            self.scale = s.reshape(1, -1).contiguous()
        self.bias = None if layer.bias is None else layer.bias.to(self.out_dtype)
        self._source = (w._version, w.data_ptr())

    def __call__(self, layer: ScaledLinear, x: torch.Tensor | Fp8Rows) -> torch.Tensor:
        w = layer.weight
        if self.weight is None or self.scale is None or self._source != (w._version, w.data_ptr()):
            self.refresh(layer)
        rows = x if isinstance(x, Fp8Rows) else quantize_rows(x)
        k = rows.shape[-1]
        a, sa = rows.data.reshape(-1, k), rows.scale.reshape(-1, 1)
        out = self._gemm(a, sa)
        return out.view(*rows.shape[:-1], out.shape[-1])

    def _gemm(self, a: torch.Tensor, sa: torch.Tensor) -> torch.Tensor:
        weight, scale = self.weight, self.scale
        if weight is None or scale is None:
            raise RuntimeError("Fp8Linear._gemm before refresh(): no FP8 weight copy yet.")
        # torch's only row-wise-scaled FP8 GEMM is a private op that its type stubs do not export
        scaled_mm = torch._scaled_mm  # pyright: ignore[reportPrivateImportUsage]
        if self.bias_in_gemm:
            try:
                return scaled_mm(
                    a, weight.t(), sa, scale, bias=self.bias, out_dtype=self.out_dtype, use_fast_accum=FAST_ACCUM
                )
            except RuntimeError:  # this torch takes no bias with row-wise scales: add it after
                self.bias_in_gemm = False
        out = scaled_mm(a, weight.t(), sa, scale, out_dtype=self.out_dtype, use_fast_accum=FAST_ACCUM)
        return out if self.bias is None else out.add_(self.bias)

    @staticmethod
    def dense_input(x: torch.Tensor | Fp8Rows, dtype: torch.dtype) -> torch.Tensor:
        """The input as a plain tensor (for run-time LoRA adapters, which take dense activations)."""
        return x.dequantize(dtype) if isinstance(x, Fp8Rows) else x
