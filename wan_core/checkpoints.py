"""Reading checkpoints: one place for file formats, prefixes and model-kind guessing.

Model loaders never open files themselves. They call :func:`open_checkpoint`, which
accepts a file, a list of shards, an HF-style folder or an in-memory state dict and
returns a lazy :class:`TensorSource`: keys, shapes and dtypes are known without
reading any tensor data, and each tensor is read from disk only when asked for.
This is what lets a loader build a model on the meta device and materialise one
tensor at a time, so a 28 GB checkpoint never sits in RAM twice.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import struct
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, Union, cast

import torch

from .devices import FP8_DTYPES
from .errors import CheckpointError, UnsupportedModelError, WanError, preview_keys
from .tensor_source import TensorInfo, TensorSource, file_identity, read_tensor
from .validation import file_problem

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
CheckpointInput = Union[PathLike, Iterable[PathLike], Mapping[str, torch.Tensor]]

SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


# ---------------------------------------------------------------------------------------
# safetensors, read directly (no mmap, so resident memory equals the tensors' own size)
# ---------------------------------------------------------------------------------------


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse the JSON header of a .safetensors file."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100_000_000:
                raise ValueError(f"header length {n} is implausible")
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error) as exc:
        raise CheckpointError(
            f"Cannot read {path} as safetensors ({exc}). The file may be truncated or not a "
            "safetensors file: download it again."
        ) from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a malformed safetensors header (not a JSON object): download it again.")
    metadata = header.pop("__metadata__", None) or {}
    infos = {key: _tensor_info(path, key, entry, 8 + n) for key, entry in header.items()}
    return infos, metadata if isinstance(metadata, dict) else {}


def _tensor_info(path: Path, key: str, entry: object, base: int) -> TensorInfo:
    """One header entry -> TensorInfo, checked: known dtype, a shape of sizes >= 0, offsets that fit it."""
    try:
        dtype_name, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]  # type: ignore[index]
        shape = tuple(int(d) for d in shape)
        start, end = int(start), int(end)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: tensor {key!r} has a malformed header entry ({exc}): download it again."
        ) from None
    dtype = SAFETENSORS_DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise CheckpointError(
            f"{path}: tensor {key!r} has dtype {dtype_name}, which is not supported. "
            f"Supported: {', '.join(SAFETENSORS_DTYPES)}. Convert the file to bf16/fp16 or download "
            "another precision."
        )
    numel = 1
    for d in shape:
        numel *= d
    if any(d < 0 for d in shape) or start < 0 or end - start != numel * dtype.itemsize:
        raise CheckpointError(
            f"{path}: tensor {key!r} (shape {shape}, {dtype_name}) does not match its byte range {start}..{end}: "
            "the file is damaged; download it again."
        )
    return TensorInfo(shape, dtype, path, base + start, end - start)


def _open_safetensors_files(paths: list[Path]) -> TensorSource:
    infos: dict[str, TensorInfo] = {}
    metadata: dict[str, str] = {}
    kinds: dict[Path, str] = {}
    for path in paths:
        file_infos, file_meta = read_safetensors_header(path)
        dup = set(file_infos) & set(infos)
        if dup:
            raise CheckpointError(f"Shards repeat tensors ({preview_keys(dup)}); pass each shard once.")
        infos.update(file_infos)
        metadata.update(file_meta)
        kinds[path] = guess_kind(file_infos)
    check_shard_kinds(kinds)
    return TensorSource(
        infos,
        lambda key: read_tensor(infos[key]),
        metadata=metadata,
        identity=file_identity(paths),
        description=", ".join(p.name for p in paths),
    )


def _open_torch_file(path: Path) -> TensorSource:
    try:
        # mmap needs torch's zip format (torch >= 1.6); an older, legacy-format pickle is read whole.
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # a damaged pickle raises almost any type (IndexError, struct.error ...); re-raise typed.
        raise CheckpointError(
            f"Cannot load {path} with torch.load(weights_only=True): {exc}. Only plain tensor "
            "checkpoints are accepted; convert other pickles to safetensors."
        ) from exc
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(sd).__name__}, expected a dict of tensors (a state dict). Save the "
            "model's state_dict() instead, or convert the file to safetensors."
        )
    src = source_from_dict(sd, description=path.name)
    src.identity = file_identity([path])
    return src


def source_from_dict(sd: Mapping[str, torch.Tensor], description: str = "state dict") -> TensorSource:
    tensors = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    infos = {k: TensorInfo(tuple(v.shape), v.dtype, None, 0, v.numel() * v.element_size()) for k, v in tensors.items()}
    return TensorSource(infos, tensors.__getitem__, identity=f"dict:{id(sd)}", description=description)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not readable JSON ({exc}): fix or re-download it.") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} should hold a JSON object: fix or re-download it.")
    return value


def check_shard_kinds(kinds: Mapping[Path, str]) -> None:
    """Shards of one model never look like two different models (a DiT and its VAE passed together)."""
    known = {path: kind for path, kind in kinds.items() if kind != UNKNOWN_KIND}
    if len(set(known.values())) > 1:
        listed = "; ".join(f"{path.name}: {kind}" for path, kind in known.items())
        raise CheckpointError(
            f"These files are different models, not shards of one ({listed}). Pass each file to its own "
            "option or loader (the DiT as the model, the VAE as the VAE, ...)."
        )


def _check_folder_is_one_model(folder: Path, files: list[Path]) -> None:
    """Without an index, several files in a folder are shards of one model only if no two of them look
    like different models and no tensor name repeats (two VAEs side by side are two models)."""
    keys = {path: set(read_safetensors_header(path)[0]) for path in files}
    kinds = {path: guess_kind(names) for path, names in keys.items()}
    seen: set[str] = set()
    repeated = False
    for names in keys.values():
        repeated = repeated or bool(seen & names)
        seen |= names
    if repeated or len({k for k in kinds.values() if k != UNKNOWN_KIND}) > 1:
        listed = "; ".join(f"{p.name}: {k}" for p, k in kinds.items())
        raise CheckpointError(
            f"Folder {folder} holds {len(files)} separate model files ({listed}) and no *.safetensors.index.json "
            "naming the shards of one model: pass the model file itself, not the folder."
        )


def _shards_of_folder(folder: Path) -> tuple[list[Path], dict | None]:
    config = None
    cfg_path = folder / "config.json"
    if cfg_path.is_file():
        config = _read_json(cfg_path)
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        weight_map = _read_json(indexes[0]).get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{indexes[0]} has no valid weight_map: download it again.")
        return sorted({folder / name for name in weight_map.values()}), config
    files = sorted(folder.glob("*.safetensors"))
    if len(files) > 1:
        _check_folder_is_one_model(folder, files)
    if not files:
        files = sorted(p for p in folder.iterdir() if p.suffix in TORCH_SUFFIXES)
    if not files:
        raise CheckpointError(
            f"Folder {folder} has no .safetensors or .pth files. Pass the folder that holds "
            "config.json and the weight shards, or the weight file itself."
        )
    return files, config


def open_checkpoint(source: CheckpointInput | TensorSource) -> TensorSource:
    """Open any accepted input as a lazy :class:`TensorSource`.

    Accepts a TensorSource (returned as is), a state dict, a ``.safetensors``,
    ``.gguf`` or ``.pth/.pt/.bin/.ckpt`` file, a list of shard files, or an HF-style
    folder (``config.json`` + index + shards).
    """
    if isinstance(source, TensorSource):
        return source
    if isinstance(source, Mapping):
        return source_from_dict(cast(Mapping[str, torch.Tensor], source))
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files, config = _shards_of_folder(path)
            src = _open_files(files)
            src.config = config
            return src
        return _open_files([path])
    paths = [Path(p) for p in source]
    if not paths:
        raise CheckpointError("An empty list of checkpoint files was given; pass at least one file.")
    return _open_files(paths)


def _open_files(paths: list[Path]) -> TensorSource:
    for p in paths:
        problem = file_problem(p)
        if problem:
            raise CheckpointError(f"Checkpoint {p} {problem}. Check the path, or re-download the missing file.")
    if all(p.suffix == ".safetensors" for p in paths):
        return _open_safetensors_files(paths)
    if len(paths) == 1 and paths[0].suffix.lower() == ".gguf":
        from .quant.gguf_file import open_gguf  # needs the optional-at-import `gguf` package

        return open_gguf(paths[0])
    if len(paths) == 1 and paths[0].suffix in TORCH_SUFFIXES:
        return _open_torch_file(paths[0])
    if all(p.suffix in TORCH_SUFFIXES for p in paths):
        merged: dict[str, torch.Tensor] = {}
        for p in paths:
            merged.update(dict(_open_torch_file(p).items()))
        src = source_from_dict(merged, description=", ".join(p.name for p in paths))
        src.identity = file_identity(paths)
        return src
    raise CheckpointError(
        f"Unsupported checkpoint file type(s): {', '.join(p.name for p in paths)}. "
        "Use .safetensors (preferred), .pth/.pt, or one .gguf file."
    )


# ---------------------------------------------------------------------------------------
# Prefixes and kind guessing
# ---------------------------------------------------------------------------------------

KNOWN_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.", "module.", "transformer.")


def common_prefix(keys: Iterable[str], candidates: Iterable[str], min_share: float = 0.5) -> str:
    """The first candidate prefix carried by at least ``min_share`` of the keys, else ''."""
    keys = list(keys)
    if not keys:
        return ""
    for prefix in candidates:
        n = sum(1 for k in keys if k.startswith(prefix))
        if n >= max(1, int(min_share * len(keys))):
            return prefix
    return ""


def strip_known_prefix(
    src: TensorSource,
    candidates: Iterable[str] = KNOWN_PREFIXES,
    others: Callable[[str], str | None] | None = lambda key: key,
) -> TensorSource:
    """Drop a wrapper prefix (ComfyUI's ``model.diffusion_model.`` etc.) when most keys carry it.

    Keys without the prefix follow ``others`` (default: kept as they are, e.g. a ``scaled_fp8``
    marker stored bare; None drops them).
    """
    prefix = common_prefix(src.keys(), candidates)
    return src.with_prefix_stripped(prefix, others) if prefix else src


def strip_wrappers(name: str, prefixes: Iterable[str]) -> str:
    """One tensor name without its leading wrapper prefixes, removed repeatedly
    (``base_model.model.transformer.x`` -> ``x``); a name that is only a prefix is kept."""
    prefixes = tuple(prefixes)
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if name.startswith(prefix) and len(name) > len(prefix):
                name = name[len(prefix) :]
                changed = True
    return name


@dataclass(frozen=True)
class KindRule:
    kind: str
    any_of: tuple[str, ...] = field(default_factory=tuple)


# Substrings that identify a family; checked on keys with wrapper prefixes removed.
KIND_RULES: tuple[KindRule, ...] = (
    KindRule("a LoRA", ("lora_A.weight", "lora_down.weight", "lora_up.weight", "lora_B.weight", ".diff_b")),
    KindRule("a Wan DiT (diffusion model)", ("head.modulation", "scale_shift_table", "blocks.0.self_attn.q.weight")),
    KindRule("a Wan VAE", ("decoder.middle.0.residual.0.gamma", "decoder.conv_in.weight", "encoder.downsamples.0")),
    KindRule(
        "a umT5 text encoder",
        (
            "encoder.block.0.layer.0.SelfAttention.q.weight",
            "blocks.0.attn.q.weight",
            "shared.weight",
            "token_embedding.weight",
        ),
    ),
    KindRule("a CLIP vision model", ("vision_model.encoder.layers.0", "visual.transformer.0")),
    KindRule("a CLIP text model", ("text_model.encoder.layers.0",)),
    KindRule("an SD/SDXL/Flux-style model", ("input_blocks.0.0.weight", "double_blocks.0.img_attn.qkv.weight")),
)


UNKNOWN_KIND = "an unknown model"
_Detector = TypeVar("_Detector", bound=Callable[..., object])


def shape_guard(what: str) -> Callable[[_Detector], _Detector]:
    """Decorator for detectors that read configs from shapes: shapes that contradict each other (a damaged
    or foreign file) raise UnsupportedModelError instead of the IndexError / ZeroDivisionError they cause."""

    def wrap(detector: _Detector) -> _Detector:
        @functools.wraps(detector)
        def checked(*args: object, **kwargs: object) -> object:
            try:
                return detector(*args, **kwargs)
            except WanError:
                raise
            except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
                raise UnsupportedModelError(
                    f"The tensor shapes do not form {what} ({type(exc).__name__}: {exc}): the file is damaged or "
                    f"not {what}. Re-download it, or load it with the matching loader."
                ) from None

        return checked  # type: ignore[return-value]

    return wrap


def guess_kind(keys: Iterable[str]) -> str:
    """Best guess at what a state dict is, for error messages ('this looks like a VAE')."""
    keys = list(keys)
    for rule in KIND_RULES:
        if any(marker in k for k in keys for marker in rule.any_of):
            return rule.kind
    return UNKNOWN_KIND


# ---------------------------------------------------------------------------------------
# fp8 "scaled" checkpoints (ComfyUI format)
# ---------------------------------------------------------------------------------------

SCALED_FP8_MARKER = "scaled_fp8"
SCALE_SUFFIXES = (".scale_weight", ".scale_input")


def scaled_fp8_dtype(src: TensorSource) -> torch.dtype | None:
    """The fp8 format announced by a ``scaled_fp8`` marker, or None when absent.

    The marker is an empty tensor whose dtype names the format; ComfyUI treats a
    float32 marker as e4m3fn.
    """
    for key in src:
        if key == SCALED_FP8_MARKER or key.endswith("." + SCALED_FP8_MARKER):
            dtype = src.dtype(key)
            return dtype if dtype in FP8_DTYPES else torch.float8_e4m3fn
    return None
