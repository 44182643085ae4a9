"""Write the tiny random-weight model files (``python -m wan_core make-tiny-models DIR``).

Every entry of :data:`wan_core.tiny_models.TINY_FILES` is written under
``DIR/<ComfyUI folder>/<released file name>`` in the layout ComfyUI's repackaged
releases use: DiTs with the ``model.diffusion_model.`` prefix, stored in the dtype
their name announces (bf16 / fp16, or scaled fp8 with a ``scaled_fp8`` marker),
VAEs and CLIP-H with their own names, umT5 with its tokenizer embedded, and a
LoRA in the ``diffusion_model.<name>.lora_down/lora_up/alpha`` layout. Shipped
workflows therefore run unchanged against this folder.
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path
from typing import Union

import torch
from safetensors.torch import save_file

from .tiny_models import TINY, TINY_FILES, TinyFile

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
DIT_PREFIX = "model.diffusion_model."


def tiny_path(directory: PathLike, name: str) -> Path:
    """Where ``make-tiny-models`` puts the file called ``name`` (a TINY_FILES name)."""
    for entry in TINY_FILES:
        if entry.name == name:
            return Path(directory) / entry.folder / entry.name
    raise KeyError(f"{name!r} is not one of the tiny model files: {[e.name for e in TINY_FILES]}")


def file_seed(entry: TinyFile, seed: int) -> int:
    """A per-file seed, so two files of one variant (A14B high/low experts) differ."""
    return seed + zlib.crc32(entry.name.encode()) % 10_000


def storage_dtype(name: str) -> torch.dtype:
    """The dtype a released file name announces (``_bf16``, ``_fp16``; else bf16)."""
    lowered = name.lower()
    if "fp16" in lowered:
        return torch.float16
    if "fp32" in lowered:
        return torch.float32
    return torch.bfloat16


def _is_block_linear(name: str, tensor: torch.Tensor) -> bool:
    """The weights ComfyUI's fp8_scaled DiTs store in fp8: 2-D Linear weights inside the blocks."""
    return tensor.ndim == 2 and (name.startswith("blocks.") or name.startswith("vace_blocks."))


def dit_file_tensors(entry: TinyFile, seed: int) -> dict[str, torch.Tensor]:
    """The tensors of a tiny DiT file in ComfyUI's layout (prefixed, name dtype or scaled fp8)."""
    from .dit.tiny import tiny_dit_state_dict

    sd = tiny_dit_state_dict(entry.kind, seed=seed)
    dtype = storage_dtype(entry.name)
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}
    return comfyui_dit_tensors(sd, fp8_scaled=entry.layout == "fp8_scaled")


def comfyui_dit_tensors(sd: dict[str, torch.Tensor], fp8_scaled: bool = False) -> dict[str, torch.Tensor]:
    """An official-layout DiT state dict in ComfyUI's file layout: prefixed, optionally fp8_scaled block Linears."""
    marker: dict[str, torch.Tensor] = {}
    if fp8_scaled:
        from .checkpoints import SCALED_FP8_MARKER
        from .fp8 import quantize_state_dict

        sd = quantize_state_dict(sd, _is_block_linear, torch.float8_e4m3fn)
        marker[SCALED_FP8_MARKER] = sd.pop(SCALED_FP8_MARKER)
    return {**{DIT_PREFIX + k: v for k, v in sd.items()}, **marker}


def lora_file_tensors(seed: int, variant: str = "wan2.1-t2v") -> dict[str, torch.Tensor]:
    """A rank-``TINY.lora_rank`` LoRA on every attention/FFN Linear of the tiny ``variant`` DiT, in
    ComfyUI's ``diffusion_model.<name>.lora_down/lora_up/alpha`` layout (bf16 factors, as released)."""
    from .dit.tiny import tiny_dit_config
    from .lora.tiny import tiny_lora_state_dict

    config = tiny_dit_config(variant)
    return tiny_lora_state_dict(config, rank=TINY.lora_rank, seed=seed, fmt="comfyui", dtype=torch.bfloat16)


def _state_dict_for(entry: TinyFile, seed: int) -> dict[str, torch.Tensor]:
    if entry.kind == "vae2.1" or entry.kind == "vae2.2":
        from .vae.tiny import tiny_vae_state_dict

        return tiny_vae_state_dict(version=entry.kind[3:], seed=seed)
    if entry.kind == "clip_vision":
        from .vision.tiny import tiny_clip_state_dict

        return tiny_clip_state_dict(seed=seed, layout="comfyui")
    if entry.kind == "lora":
        return lora_file_tensors(seed)
    return dit_file_tensors(entry, seed)


def write_tiny_file(entry: TinyFile, directory: PathLike, seed: int = 0) -> Path:
    """Write one TINY_FILES entry under ``directory``; returns its path."""
    path = Path(directory) / entry.folder / entry.name
    path.parent.mkdir(parents=True, exist_ok=True)
    if entry.kind == "umt5":
        from .text.tiny import write_tiny_t5

        write_tiny_t5(path, fp8_scaled=entry.layout == "fp8_scaled", seed=file_seed(entry, seed))
        return path
    tensors = _state_dict_for(entry, file_seed(entry, seed))
    save_file(
        {k: v.contiguous() for k, v in tensors.items()},
        str(path),
        metadata={"wan_core_tiny": entry.kind, "format": "pt"},
    )
    return path


def write_tiny_models(
    directory: PathLike, seed: int = 0, names: tuple[str, ...] | None = None, overwrite: bool = True
) -> dict[str, Path]:
    """Write the tiny model files (all of TINY_FILES, or only ``names``) -> {file name: path}.

    With ``overwrite=False`` files that already exist are kept (fast re-use of a cache folder).
    """
    wanted = set(names) if names is not None else None
    if wanted is not None:
        unknown = wanted - {e.name for e in TINY_FILES}
        if unknown:
            raise KeyError(f"Unknown tiny model names {sorted(unknown)}; choose from {[e.name for e in TINY_FILES]}")
    written: dict[str, Path] = {}
    for entry in TINY_FILES:
        if wanted is not None and entry.name not in wanted:
            continue
        path = Path(directory) / entry.folder / entry.name
        if overwrite or not path.is_file():
            write_tiny_file(entry, directory, seed)
            log.info("wrote %s (%s)", path, entry.kind)
        written[entry.name] = path
    return written
