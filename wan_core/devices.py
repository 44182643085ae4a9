"""Device and dtype policy: the one place that decides where and in what precision to run.

Nothing here allocates on an accelerator at import time. Callers (ComfyUI through
``nodes/comfy_bridge.py``, the CLI, user code) pass a device; ``None`` means "the
best available one".
"""

from __future__ import annotations

import gc
import logging

import torch

log = logging.getLogger(__name__)

DTYPE_NAMES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp8_e4m3fn": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
    "int8": torch.int8,
}


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """The given device (checked: known and present in this PyTorch build), or the best available one."""
    if device is not None:
        return check_device(device)
    if torch.cuda.is_available():  # also true on ROCm builds
        return torch.device("cuda")
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return torch.device("xpu")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_BACKENDS = {
    "cuda": lambda: torch.cuda.is_available(),
    "xpu": lambda: hasattr(torch, "xpu") and torch.xpu.is_available(),
    "mps": lambda: getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
}


def _device_count(kind: str) -> int:
    module = getattr(torch, kind, None)
    return int(module.device_count()) if module is not None and hasattr(module, "device_count") else 1


def check_device(device: torch.device | str) -> torch.device:
    """``device`` as a torch.device, or InputError when the name is unknown or the device absent."""
    from .errors import InputError

    if not isinstance(device, (str, torch.device)):
        raise InputError(f"device must be a name such as 'cpu' or 'cuda:0'; got {type(device).__name__}.")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"Unknown device {device!r}; use cpu, cuda, cuda:N, mps or xpu.") from None
    available = _BACKENDS.get(dev.type)
    if available is not None and not available():
        build = f"PyTorch {torch.__version__}"
        raise InputError(
            f"Device {str(device)!r} is not available in this {build} on this machine; use cpu, or install a "
            f"PyTorch build with {dev.type} support and check the driver."
        )
    if available is not None and dev.index is not None and dev.index >= _device_count(dev.type):
        raise InputError(
            f"Device {str(device)!r} does not exist: this machine has {_device_count(dev.type)} {dev.type} "
            f"device(s), numbered from 0."
        )
    return dev


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device | str | None = None) -> torch.dtype:
    """Parse a dtype name, or choose the compute dtype for ``device`` when None.

    bf16 where the hardware has it (CUDA/ROCm/XPU/MPS), fp32 on CPU, where half
    precision matmuls are slow and the tests want exact parity.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype not in ("", "auto", "default"):
        try:
            return DTYPE_NAMES[dtype.lower()]
        except KeyError:
            from .errors import InputError

            raise InputError(f"Unknown dtype {dtype!r}; use one of {', '.join(DTYPE_NAMES)}.") from None
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if dev.type in ("xpu", "mps"):
        return torch.bfloat16
    return torch.float32


FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def is_fp8(dtype: torch.dtype) -> bool:
    """True for the fp8 storage dtypes (e4m3fn, e5m2)."""
    return dtype in FP8_DTYPES


def is_storage_dtype(dtype: torch.dtype) -> bool:
    """True for weight-storage-only dtypes (fp8, int8): the model computes in another dtype."""
    return is_fp8(dtype) or dtype == torch.int8


def compute_dtype_for(storage: torch.dtype | None, device: torch.device | str | None = None) -> torch.dtype:
    """The dtype a model computes in when its weights are stored in ``storage``.

    fp8 and int8 are storage formats only (weights are dequantised per layer), and None means
    "keep what the file has": both compute in the device's default (``resolve_dtype``).
    Any other dtype is also the compute dtype.
    """
    if storage is None or is_storage_dtype(storage):
        return resolve_dtype(None, device)
    return storage


def empty_cache(device: torch.device | str | None = None) -> None:
    """Return cached allocator memory to the driver (after interrupts, between experts)."""
    gc.collect()
    dev = torch.device(device) if device is not None else None
    if (dev is None or dev.type == "cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif dev is not None and dev.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
    elif dev is not None and dev.type == "xpu" and hasattr(torch, "xpu"):
        torch.xpu.empty_cache()


def free_memory(device: torch.device | str) -> int | None:
    """Free bytes on ``device`` (None when unknown, e.g. CPU or MPS)."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(dev)
        reserved_unused = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        return int(free + reserved_unused)
    return None


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)
