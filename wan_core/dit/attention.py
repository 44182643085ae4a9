"""The one attention entry point of the DiT; the kernel is chosen here, explicitly.

``attention(q, k, v, backend)`` takes and returns [B, S, H, d] (no mask, softmax scale
1/sqrt(d)). Backends:

* ``"sdpa"``: PyTorch SDPA with the kernel order of :func:`sdpa_order` for the device
  and dtype (cuDNN first on Hopper and newer, flash first on Ampere/Ada).
* ``"sdpa_cudnn"``, ``"sdpa_flash"``, ``"sdpa_efficient"``, ``"sdpa_math"``: exactly that
  SDPA kernel (an error names the kernel when it cannot run these tensors).
* ``"flash_attn"``: flash-attn 3 (``flash_attn_interface``) or 2 (``flash_attn``).
* ``"sageattention"``: SageAttention (int8 QK; approximate, never picked by auto).
* ``"int8"``: our Triton kernel, INT8 Q K^T with per-block scales, P V in FP8
  (:mod:`wan_core.kernels.int8_attention`; approximate, CUDA sm89+ only);
  ``"int8_fp16pv"``: the same with P V in fp16.
* ``"fp8"``: flash-attn 3's FP8 kernel, Q, K, V in e4m3 with one scale per head
  (:mod:`wan_core.kernels.fp8_attention`; approximate, Hopper only).
* ``"auto"``: flash-attn 3 when installed and fp16/bf16 tensors are on CUDA (1.18x cuDNN's
  kernel at Wan's shapes on an H200), ``"sdpa"`` for fp32 and for shapes it refuses; else ``"sdpa"``.

Why explicit: SDPA's own choice reads process-wide state that other code changes.
ComfyUI runs its SDPA inside ``sdpa_kernel([...], set_priority=True)``; once that has run,
a plain SDPA call in the same process gets flash instead of cuDNN on an H200 (0.72 s
instead of 0.51 s for a 1.3B forward). So every SDPA call here enables exactly one kernel
(``sdpa_kernel([one])``, restored on exit) and walks our order; kernels that refuse a
shape are remembered per (device, dtype, shape) and skipped from then on.

Optional packages are imported lazily, only when asked for. Kernels that only take
fp16/bf16 get bf16 copies for fp32 inputs (as the official code does) and their
output is cast back. On a non-CUDA device an explicit CUDA backend falls back to
``"sdpa"`` with a one-time warning.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from functools import lru_cache, partial

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, _backend_names, sdpa_kernel

from .. import kernels
from ..errors import BackendUnavailableError
from ..kernels import fp8_attention
from ..kernels.fp8_attention import flash_attn_output

log = logging.getLogger(__name__)

AttnFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

SDPA_KERNELS = {
    "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION,
    "sdpa_flash": SDPBackend.FLASH_ATTENTION,
    "sdpa_efficient": SDPBackend.EFFICIENT_ATTENTION,
    "sdpa_math": SDPBackend.MATH,
}
ALIASES = {
    "sdpa": "sdpa",
    "torch": "sdpa",
    **{name: name for name in SDPA_KERNELS},
    "cudnn": "sdpa_cudnn",
    "flash": "flash_attn",
    "flash_attn": "flash_attn",
    "flash-attn": "flash_attn",
    "flash_attn_3": "flash_attn_3",
    "sage": "sageattention",
    "sageattention": "sageattention",
    "int8": "int8",
    "int8_fp16pv": "int8_fp16pv",
    "fp8": "fp8",
    "flash_attn_3_fp8": "fp8",
    "auto": "auto",
}
PIP_NAMES = {
    "flash_attn": "flash-attn",
    "flash_attn_3": "flash-attn 3 (hopper build)",
    "sageattention": "sageattention",
    "fp8": "flash-attn 3 (hopper build)",
}
_warned: set[str] = set()
_refused: dict[tuple, set[str]] = {}  # (device, dtype, shapes) -> SDPA kernels that raised for it


def sdpa_order(device: torch.device, dtype: torch.dtype) -> tuple[str, ...]:
    """Our SDPA kernel order for ``device`` and ``dtype`` (measured on H100/H200: cuDNN 1.6x flash)."""
    if device.type == "cuda" and torch.version.hip is None and dtype in (torch.float16, torch.bfloat16):
        if torch.cuda.get_device_capability(device)[0] >= 9:
            return ("sdpa_cudnn", "sdpa_flash", "sdpa_efficient", "sdpa_math")
        return ("sdpa_flash", "sdpa_efficient", "sdpa_cudnn", "sdpa_math")
    if device.type == "cuda" and torch.version.hip is not None:  # ROCm: flash via aotriton
        return ("sdpa_flash", "sdpa_efficient", "sdpa_math")
    if device.type == "cuda":  # fp32: flash and cuDNN take half precision only
        return ("sdpa_efficient", "sdpa_math")
    if device.type == "cpu":
        return ("sdpa_flash", "sdpa_math")  # the CPU flash kernel, then the reference
    return ("sdpa_math",) if device.type == "meta" else ("sdpa_any",)


def _sdpa_call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str) -> torch.Tensor:
    """One SDPA call on [B, S, H, d] views with only ``kernel`` enabled (``sdpa_any``: all of them)."""
    backends = (
        [getattr(SDPBackend, n) for n in _backend_names.values()] if kernel == "sdpa_any" else [SDPA_KERNELS[kernel]]
    )
    with sdpa_kernel(backends):
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def _shape_key(q: torch.Tensor, k: torch.Tensor) -> tuple:
    return (str(q.device), q.dtype, tuple(q.shape), tuple(k.shape))


def _first_that_runs(candidates: Sequence[tuple[str, AttnFn]], q: torch.Tensor, k, v) -> torch.Tensor:
    """The first of ``candidates`` (name, kernel) that takes these tensors; one that raised for a shape is
    remembered and skipped for it from then on."""
    key = _shape_key(q, k)
    refused = _refused.setdefault(key, set())
    errors = []
    for name, kernel in candidates:
        if name in refused:
            continue
        try:
            return kernel(q, k, v)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as exc:  # this kernel cannot take these tensors: next one
            refused.add(name)
            errors.append(f"{name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            log.info("Attention kernel %s refused %s; trying the next one.", name, key)
    raise BackendUnavailableError(
        f"No attention kernel of {[name for name, _ in candidates]} can run attention on {key}: "
        f"{'; '.join(errors) or 'all refused'}. Use attention='sdpa' (it falls back to the math kernel)."
    )


def _sdpa_candidates(kernels: tuple[str, ...]) -> list[tuple[str, AttnFn]]:
    return [(kernel, partial(_sdpa_call, kernel=kernel)) for kernel in kernels]


def sdpa_with(kernels: tuple[str, ...]) -> AttnFn:
    """SDPA that tries ``kernels`` in order, remembering which ones refused a shape."""
    candidates = _sdpa_candidates(kernels)
    return lambda q, k, v: _first_that_runs(candidates, q, k, v)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA on [B, S, H, d] with our kernel order for q's device and dtype."""
    return sdpa_with(sdpa_order(q.device, q.dtype))(q, k, v)


def chosen_sdpa_kernel(q: torch.Tensor, k: torch.Tensor) -> str:
    """The SDPA kernel ``sdpa`` uses for these tensors (the first not yet refused)."""
    refused = _refused.get(_shape_key(q, k), set())
    return next(name for name in sdpa_order(q.device, q.dtype) if name not in refused)


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
        elif name == "fp8":
            return fp8_attention.fp8_attention if fp8_attention.flash_attn_3() is not None else None
        elif name in ("int8", "int8_fp16pv"):
            module = importlib.import_module("wan_core.kernels.int8_attention")
            return module.int8_attention if name == "int8" else module.int8_attention_fp16_pv
        else:
            return None
    except (ImportError, AttributeError, OSError) as exc:
        log.debug("attention backend %s unavailable: %s", name, exc)
        return None

    def call(q, k, v):
        return flash_attn_output(fn(q, k, v))

    return call


def _kernel(name: str) -> AttnFn:
    fn = _load(name)
    if fn is None and name == "flash_attn":
        fn = _load("flash_attn_3")
    if fn is None:
        package = PIP_NAMES.get(name, "triton")
        how = (
            f"Build {package} from flash-attention's hopper/ folder"
            if "hopper" in package
            else f"Install it with `pip install {package}`"
        )
        raise BackendUnavailableError(
            f"Attention backend {name!r} was asked for but is not installed. {how}, "
            "or use attention='sdpa' (always available)."
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
    if backend not in ("sdpa", "auto") and backend not in SDPA_KERNELS:
        _kernel(backend)
    return backend


def select(backend: str, device: torch.device) -> AttnFn:
    """The attention function for a normalised backend name on ``device``."""
    if backend == "sdpa":
        return sdpa
    if backend in SDPA_KERNELS:
        return sdpa_with((backend,))
    interpretable = backend.startswith("int8") and device.type == "cpu" and kernels.interpreted()  # tests
    if device.type != "cuda" and not interpretable:
        if backend != "auto" and backend not in _warned:
            _warned.add(backend)
            log.warning("Attention backend %s needs CUDA; using SDPA on %s.", backend, device.type)
        return sdpa
    if backend == "auto":
        return _flash_attn_3_or_sdpa() if _load("flash_attn_3") is not None else sdpa
    return _kernel(backend)


def _flash_attn_3_or_sdpa() -> AttnFn:
    """flash-attn 3 for fp16/bf16, then our SDPA order: SDPA for fp32 (kept exact) and for shapes flash-attn 3
    refuses (a build without some head dims, say)."""
    fa3 = [("flash_attn_3", _kernel("flash_attn_3"))]

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        first = fa3 if q.dtype in (torch.float16, torch.bfloat16) else []
        return _first_that_runs([*first, *_sdpa_candidates(sdpa_order(q.device, q.dtype))], q, k, v)

    return run


def eight_bit_attention(backend: str, device: torch.device) -> str:
    """The 8-bit path's attention: ``auto`` becomes ``fp8`` where flash-attn 3's FP8 kernel runs, else unchanged."""
    return "fp8" if backend == "auto" and fp8_attention.runs_fp8(device) else backend


def resolved(backend: str, device: torch.device) -> str:
    """What a normalised backend name runs on ``device``: ``auto`` names its pick (for logs and benchmarks)."""
    if backend != "auto":
        return backend
    return "flash_attn_3" if device.type == "cuda" and _load("flash_attn_3") is not None else "sdpa"


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v for q [B, Sq, H, d], k/v [B, Sk, H, d] -> [B, Sq, H, d]."""
    return select(backend, q.device)(q, k, v)
