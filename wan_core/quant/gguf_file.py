"""GGUF files as a lazy :class:`~wan_core.tensor_source.TensorSource` (parsed with the ``gguf`` package).

Community Wan GGUFs (city96's converter and others) keep the official / ComfyUI tensor
names, so every loader's name handling applies unchanged. GGUF specifics handled here:

* dims are stored fastest-first (ggml's ``ne``); torch shapes are the reverse;
* tensors with more dims than GGUF allows (the 5-D patch-embedding conv) or awkward row
  lengths are stored reshaped, their torch shape in ``comfy.gguf.orig_shape.<name>``;
* F32/F16/BF16 tensors read as ordinary tensors; block-quantised ones (Q8_0, Q4_K, ...)
  read dequantised to fp32 through the mapping, while :func:`read_packed` gives their
  raw bytes for loaders that keep them quantised (the DiT's Linear weights).

Tensor data is read with plain file reads (no mmap), like the safetensors reader.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..tensor_source import TensorInfo, TensorSource, file_identity, read_tensor
from . import ggml

log = logging.getLogger(__name__)

ORIG_SHAPE_PREFIX = "comfy.gguf.orig_shape."
FLOAT_TYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
SUPPORTED_TYPES = (*FLOAT_TYPES, *ggml.GGML_TYPES)
METADATA_KEYS = ("general.architecture", "general.name", "general.file_type", "general.quantization_version")


def _import_gguf() -> Any:
    try:
        import gguf
    except ImportError as exc:
        raise CheckpointError(
            "Reading .gguf files needs the `gguf` package, which is not installed. Install it with "
            "`pip install gguf` (it is in this pack's requirements.txt)."
        ) from exc
    return gguf


def _parse(path: Path) -> Any:
    """A GGUFReader over ``path``; any parse failure becomes a CheckpointError saying what to do."""
    gguf = _import_gguf()
    try:
        return gguf.GGUFReader(path, "r")
    except Exception as exc:  # the reader raises ValueError, KeyError, IndexError, struct errors ...
        raise CheckpointError(
            f"Cannot read {path} as GGUF ({type(exc).__name__}: {exc}). The file is truncated, damaged "
            "or not a GGUF file: download it again, or pick a .safetensors file."
        ) from exc


def _field_value(field: Any, gguf: Any) -> Any:
    """A metadata field's value: str, number, or list (arrays)."""
    types = list(field.types)
    if not types:
        return None
    if types[0] == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    if types[0] == gguf.GGUFValueType.ARRAY:
        if len(types) > 1 and types[1] == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    return field.parts[field.data[0]].tolist()[0]


def _orig_shape(reader: Any, name: str, gguf: Any) -> tuple[int, ...] | None:
    field = reader.get_field(ORIG_SHAPE_PREFIX + name)
    if field is None:
        return None
    value = _field_value(field, gguf)
    if not isinstance(value, list) or not all(isinstance(v, int) and v > 0 for v in value):
        raise CheckpointError(
            f"GGUF metadata {ORIG_SHAPE_PREFIX + name} should be a list of positive integers (the "
            f"tensor's torch shape) but is {value!r}. The file was written by a broken converter: re-convert it."
        )
    return tuple(value)


def _tensor_info(path: Path, tensor: Any, orig_shape: tuple[int, ...] | None, file_size: int) -> TensorInfo:
    type_name = tensor.tensor_type.name
    if type_name not in SUPPORTED_TYPES:
        raise CheckpointError(
            f"{path.name}: tensor {tensor.name!r} is stored as GGUF type {type_name}, which is not supported. "
            f"Supported: {', '.join(SUPPORTED_TYPES)}. Use a file quantised to one of these (e.g. Q8_0, Q5_K_M, "
            "Q4_K_M)."
        )
    stored = tuple(int(d) for d in reversed(tensor.shape.tolist()))
    shape = orig_shape or stored
    numel = int(tensor.n_elements)
    if math.prod(shape) != numel:
        raise CheckpointError(
            f"{path.name}: tensor {tensor.name!r} has {numel} elements but its recorded torch shape is "
            f"{shape}. The file is damaged or was written by a broken converter: re-download or re-convert it."
        )
    end = int(tensor.data_offset) + int(tensor.n_bytes)
    if end > file_size:
        raise CheckpointError(
            f"{path} is truncated: tensor {tensor.name!r} ends at byte {end} but the file has {file_size} "
            "bytes. Download the file again."
        )
    if type_name in FLOAT_TYPES:
        return TensorInfo(shape, FLOAT_TYPES[type_name], path, int(tensor.data_offset), int(tensor.n_bytes))
    return TensorInfo(shape, torch.float32, path, int(tensor.data_offset), int(tensor.n_bytes), ggml_type=type_name)


def read_packed(info: TensorInfo) -> torch.Tensor:
    """The packed GGML blocks of a quantised GGUF tensor: uint8 [n_blocks, block bytes]."""
    if info.ggml_type is None:
        raise ValueError(f"{info.path}: read_packed is for quantised GGUF tensors; this one is {info.dtype}.")
    t = ggml.GGML_TYPES[info.ggml_type]
    raw = read_tensor(TensorInfo((info.nbytes,), torch.uint8, info.path, info.offset, info.nbytes))
    return raw.reshape(-1, t.nbytes)


def read_gguf_tensor(info: TensorInfo) -> torch.Tensor:
    """A GGUF tensor's values (block-quantised ones dequantised to fp32)."""
    if info.ggml_type is None:
        return read_tensor(info)
    return ggml.dequantize(read_packed(info), info.ggml_type, info.shape, torch.float32)


def open_gguf(path: Path) -> TensorSource:
    """Open a ``.gguf`` file: names, torch shapes and types now; data only when a tensor is read."""
    gguf = _import_gguf()
    reader = _parse(path)
    size = path.stat().st_size
    infos = {t.name: _tensor_info(path, t, _orig_shape(reader, t.name, gguf), size) for t in reader.tensors}
    if not infos:
        raise CheckpointError(f"{path} is a GGUF file without tensors. Pick the model file itself.")
    metadata = {}
    for key in METADATA_KEYS:
        field = reader.get_field(key)
        if field is not None:
            metadata[key] = str(_field_value(field, gguf))
    del reader  # closes the header's memory map
    quantised = sorted({i.ggml_type for i in infos.values() if i.ggml_type})
    log.info("GGUF %s: %d tensors, block types %s.", path.name, len(infos), ", ".join(quantised) or "none")
    return TensorSource(
        infos,
        lambda key: read_gguf_tensor(infos[key]),
        metadata=metadata,
        identity=file_identity([path]),
        description=path.name,
    )
