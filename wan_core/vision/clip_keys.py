"""CLIP vision checkpoint layouts -> official open-clip names (``visual.`` prefix removed).

Accepted (WAN_SPEC section 6), each with any wrapper prefix:
* official ``models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth``: ``visual.transformer.N.attn.to_qkv``
  (q, k, v fused) ...; ``textual.*`` is ignored;
* ComfyUI ``clip_vision_h.safetensors`` / HF ``CLIPVisionModel(WithProjection)``:
  ``[vision_model.]encoder.layers.N.self_attn.{q,k,v}_proj`` ...; q/k/v are fused lazily on read;
* standard OpenCLIP (e.g. laion ``open_clip_pytorch_model.bin``, which ComfyUI also accepts):
  ``visual.transformer.resblocks.N.attn.in_proj_weight`` (q, k, v rows, as nn.MultiheadAttention) ...
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

from ..checkpoints import guess_kind
from ..devices import is_fp8
from ..errors import UnsupportedModelError
from ..fp8 import read_dequantized
from ..tensor_source import TensorInfo, TensorSource

OFFICIAL_ANCHOR = "transformer.0.attn.to_qkv.weight"
HF_ANCHOR = "encoder.layers.0.self_attn.q_proj.weight"
OPENCLIP_ANCHOR = "transformer.resblocks.0.attn.in_proj_weight"
_OPENCLIP_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")
_OPENCLIP_BLOCK_RULES = {
    "ln_1.": "norm1.",
    "ln_2.": "norm2.",
    "attn.in_proj_weight": "attn.to_qkv.weight",
    "attn.in_proj_bias": "attn.to_qkv.bias",
    "attn.out_proj.": "attn.proj.",
    "mlp.c_fc.": "mlp.0.",
    "mlp.c_proj.": "mlp.2.",
}
_OPENCLIP_TOP = {
    "conv1.weight": "patch_embedding.weight",
    "ln_pre.weight": "pre_norm.weight",
    "ln_pre.bias": "pre_norm.bias",
}
_HF_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")
_HF_LAYER_RULES = {
    "layer_norm1.": "norm1.",
    "layer_norm2.": "norm2.",
    "self_attn.out_proj.": "attn.proj.",
    "mlp.fc1.": "mlp.0.",
    "mlp.fc2.": "mlp.2.",
}
_HF_TOP = {
    "embeddings.patch_embedding.weight": "patch_embedding.weight",
    "pre_layrnorm.weight": "pre_norm.weight",
    "pre_layrnorm.bias": "pre_norm.bias",
}
_OFFICIAL_UNUSED = ("post_norm.", "head")


def find_layout(keys: list[str]) -> tuple[str, str]:
    """(layout, wrapper prefix) with layout "official" or "hf"."""
    for layout, anchor in (("hf", HF_ANCHOR), ("official", OFFICIAL_ANCHOR), ("openclip", OPENCLIP_ANCHOR)):
        hits = sorted((k for k in keys if k.endswith(anchor) and "text" not in k[: -len(anchor)]), key=len)
        if hits:
            return layout, hits[0][: -len(anchor)]
    raise UnsupportedModelError(
        f"This file is not a CLIP vision model: no '{HF_ANCHOR}' or '{OFFICIAL_ANCHOR}' tensor. It looks like "
        f"{guess_kind(keys)}. Load clip_vision_h.safetensors (ComfyUI clip_vision folder) or the official "
        "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth."
    )


def _block_renamer(top: dict[str, str], block: re.Pattern[str], rules: dict[str, str]) -> Callable[[str], str | None]:
    """Key renamer: exact ``top`` names, then ``<block N>.<old><tail>`` -> ``transformer.N.<new><tail>``.

    Keys it has no rule for map to None (dropped), so the caller adds the tensors
    that need reshaping or fusing (class/position embeddings, HF q/k/v) itself.
    """

    def rename(key: str) -> str | None:
        if key in top:
            return top[key]
        m = block.match(key)
        if m:
            index, rest = m.groups()
            for old, new in rules.items():
                if rest.startswith(old):
                    return f"transformer.{index}.{new}{rest[len(old) :]}"
        return None

    return rename


# HF: q/k/v are fused below; post-norm and position_ids are unused.
_rename_hf_simple = _block_renamer(_HF_TOP, _HF_LAYER, _HF_LAYER_RULES)
# OpenCLIP: ln_post and proj are unused.
_rename_openclip = _block_renamer(_OPENCLIP_TOP, _OPENCLIP_BLOCK, _OPENCLIP_BLOCK_RULES)


Reader = Callable[[], torch.Tensor]


def _with_embeddings(
    src: TensorSource, simple: TensorSource, cls_key: str, pos_key: str
) -> tuple[dict[str, TensorInfo], dict[str, Reader]]:
    """Infos and readers of ``simple`` plus cls [1, 1, C] and pos [1, L, C] reshaped from ``src``."""
    infos = {k: simple.info(k) for k in simple}
    readers: dict[str, Reader] = {k: (lambda k=k: simple[k]) for k in simple}
    width = src.shape(cls_key)[-1]
    cls_info, pos_info = src.info(cls_key), src.info(pos_key)
    infos["cls_embedding"] = TensorInfo((1, 1, width), cls_info.dtype, nbytes=cls_info.nbytes)
    readers["cls_embedding"] = lambda: src[cls_key].reshape(1, 1, width)
    infos["pos_embedding"] = TensorInfo((1, *pos_info.shape[-2:]), pos_info.dtype, nbytes=pos_info.nbytes)
    readers["pos_embedding"] = lambda: src[pos_key].reshape(1, *pos_info.shape[-2:])
    return infos, readers


def _lazy_source(src: TensorSource, infos: dict[str, TensorInfo], readers: dict[str, Reader]) -> TensorSource:
    """A TensorSource over ``readers`` that keeps ``src``'s config, identity and description."""
    return TensorSource(
        infos, lambda key: readers[key](), config=src.config, identity=src.identity, description=src.description
    )


def _openclip_to_official(src: TensorSource) -> TensorSource:
    infos, readers = _with_embeddings(src, src.renamed(_rename_openclip), "class_embedding", "positional_embedding")
    return _lazy_source(src, infos, readers)


def _hf_to_official(src: TensorSource) -> TensorSource:
    infos, readers = _with_embeddings(
        src, src.renamed(_rename_hf_simple), "embeddings.class_embedding", "embeddings.position_embedding.weight"
    )
    layers = {int(m.group(1)) for k in src if (m := _HF_LAYER.match(k))}
    for i in layers:
        base = f"encoder.layers.{i}.self_attn."
        for part in ("weight", "bias"):
            names = [f"{base}{p}_proj.{part}" for p in "qkv"]
            first = src.info(names[0])
            shape = (3 * first.shape[0], *first.shape[1:])
            # fp8 q/k/v each have their own scale, so they are fused dequantised (fp32)
            dtype = torch.float32 if is_fp8(first.dtype) else first.dtype
            nbytes = 3 * first.nbytes * (4 if is_fp8(first.dtype) else 1)
            infos[f"transformer.{i}.attn.to_qkv.{part}"] = TensorInfo(shape, dtype, nbytes=nbytes)
            readers[f"transformer.{i}.attn.to_qkv.{part}"] = lambda names=names: torch.cat(
                [read_dequantized(src, n) for n in names]
            )
    return _lazy_source(src, infos, readers)


def to_official(src: TensorSource) -> TensorSource:
    """A lazy view with official names (no ``visual.`` prefix); unused tensors are dropped."""
    layout, prefix = find_layout(list(src.keys()))
    scoped = src.with_prefix_stripped(prefix) if prefix else src
    if layout == "hf":
        return _hf_to_official(scoped)
    if layout == "openclip":
        return _openclip_to_official(scoped)
    return scoped.renamed(lambda k: None if k.startswith(_OFFICIAL_UNUSED) else k)
