"""Shared helpers for the quantisation tests (no tests here): GGUF writing with `gguf`, hand-built K-quant blocks."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as GT

# what `gguf` can quantise itself (numpy reference quantisers)
GGUF_WRITABLE = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")
K_QUANTS = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
FLOATS = ("F32", "F16", "BF16")
# byte offsets of the fp16 super-block factors (d, dmin) in each K-quant block (ggml's block structs)
K_LAYOUT = {
    "Q2_K": (84, (80, 82)),
    "Q3_K": (110, (108,)),
    "Q4_K": (144, (0, 2)),
    "Q5_K": (176, (0, 2)),
    "Q6_K": (210, (208,)),
}


def random_k_blocks(type_name: str, n_blocks: int, rng: np.random.Generator, d_scale: float) -> np.ndarray:
    """Random K-quant blocks (any bit pattern is a valid block) whose fp16 factors are finite, ~d_scale."""
    nbytes, factor_at = K_LAYOUT[type_name]
    blocks = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
    for at in factor_at:
        d = (np.abs(rng.normal(size=(n_blocks, 1))) * d_scale).astype(np.float16)
        blocks[:, at : at + 2] = d.view(np.uint8).reshape(n_blocks, 2)
    return blocks


def encode(w: torch.Tensor, type_name: str, rng: np.random.Generator) -> tuple[np.ndarray, GT]:
    """The array to give GGUFWriter.add_tensor for ``w`` [rows, cols] stored as ``type_name``.

    K-quants are not quantised from ``w`` (gguf cannot): random blocks of the same size stand in.
    """
    qtype = getattr(GT, type_name)
    a = w.detach().float().numpy()
    if type_name == "F32":
        return a, qtype
    if type_name == "F16":
        return a.astype(np.float16), qtype
    if type_name in K_QUANTS:
        rows, cols = a.shape[0], int(np.prod(a.shape[1:]))
        nbytes = K_LAYOUT[type_name][0]
        blocks = random_k_blocks(type_name, rows * cols // 256, rng, 1.0 / (40 * np.sqrt(cols)))
        return blocks.reshape(rows, cols // 256 * nbytes), qtype
    return gguf.quants.quantize(a, qtype), qtype


def write_gguf(
    path: Path,
    tensors: dict[str, torch.Tensor],
    types: dict[str, str],
    orig_shape: dict[str, tuple[int, ...]] | None = None,
    seed: int = 0,
    arch: str = "wan",
) -> Path:
    """Write ``tensors`` (name -> type from ``types``, default F32) with gguf's writer.

    Names in ``orig_shape`` are stored flattened to 2-D with their torch shape in
    ``comfy.gguf.orig_shape.<name>``, as the ComfyUI-GGUF converter does for 5-D convs.
    """
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch)
    for name, t in tensors.items():
        if orig_shape and name in orig_shape:
            writer.add_array(f"comfy.gguf.orig_shape.{name}", list(orig_shape[name]))
            t = t.reshape(t.shape[0], -1)
        data, qtype = encode(t, types.get(name, "F32"), rng)
        writer.add_tensor(name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def gguf_reference(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a GGUF file as gguf itself reads and dequantises it (the independent reference)."""
    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(np.array(t.data), t.tensor_type)
        field = reader.get_field(f"comfy.gguf.orig_shape.{t.name}")
        if field is not None:
            values = values.reshape([int(field.parts[i][0]) for i in field.data])
        tensor = torch.from_numpy(np.ascontiguousarray(values))
        out[t.name] = tensor.to(torch.float32) if t.tensor_type.name not in ("F16",) else tensor
    return out


def block_linear_types(sd: dict[str, torch.Tensor], types: tuple[str, ...]) -> dict[str, str]:
    """Assign ``types`` in turn to the 2-D ``blocks.*`` weights of a DiT state dict."""
    names = [k for k, v in sd.items() if k.startswith("blocks.") and k.endswith(".weight") and v.ndim == 2]
    return {name: types[i % len(types)] for i, name in enumerate(sorted(names))}
