"""umT5 checkpoint layouts -> the official key names our encoder is built with.

Accepted layouts (WAN_SPEC 5.3), each with or without a wrapper prefix:
* official ``models_t5_umt5-xxl-enc-bf16.pth``: ``token_embedding``, ``blocks.N.attn.q`` ...
* HF ``UMT5EncoderModel`` / ComfyUI: ``shared``, ``encoder.block.N.layer.0.SelfAttention.q`` ...
ComfyUI files may add ``spiece_model`` (the tokenizer) and ``scaled_fp8`` + ``*.scale_weight``.
"""

from __future__ import annotations

import re

from ..checkpoints import SCALE_SUFFIXES, SCALED_FP8_MARKER, guess_kind
from ..errors import CheckpointError, UnsupportedModelError
from ..tensor_source import TensorSource

SPIECE_KEY = "spiece_model"
OFFICIAL_ANCHOR = "blocks.0.attn.q.weight"
HF_ANCHOR = "encoder.block.0.layer.0.SelfAttention.q.weight"

_HF_BLOCK_RULES: tuple[tuple[str, str], ...] = (
    ("layer.0.layer_norm.", "norm1."),
    ("layer.0.SelfAttention.relative_attention_bias.", "pos_embedding.embedding."),
    ("layer.0.SelfAttention.", "attn."),
    ("layer.1.layer_norm.", "norm2."),
    ("layer.1.DenseReluDense.wi_0.", "ffn.gate.0."),
    ("layer.1.DenseReluDense.wi_1.", "ffn.fc1."),
    ("layer.1.DenseReluDense.wo.", "ffn.fc2."),
)
_HF_BLOCK = re.compile(r"^encoder\.block\.(\d+)\.(.+)$")
_HF_IGNORED = ("decoder.", "lm_head.", "encoder.embed_tokens.")


def find_prefix(keys: list[str]) -> tuple[str, str]:
    """(layout, wrapper prefix): layout is "official" or "hf"; raises when neither anchor is present."""
    for layout, anchor in (("hf", HF_ANCHOR), ("official", OFFICIAL_ANCHOR)):
        hits = sorted((k for k in keys if k.endswith(anchor)), key=len)
        if hits:
            return layout, hits[0][: -len(anchor)]
    raise UnsupportedModelError(
        f"This file is not a umT5 text encoder: no '{HF_ANCHOR}' or '{OFFICIAL_ANCHOR}' tensor. "
        f"It looks like {guess_kind(keys)}. Load umt5_xxl_*.safetensors or models_t5_umt5-xxl-enc-bf16.pth."
    )


def _rename_hf(key: str) -> str | None:
    if key == "shared.weight":
        return "token_embedding.weight"
    if key.startswith("shared.scale"):
        return "token_embedding." + key[len("shared.") :]
    if key.startswith("encoder.final_layer_norm."):
        return "norm." + key[len("encoder.final_layer_norm.") :]
    m = _HF_BLOCK.match(key)
    if m:
        index, rest = m.groups()
        for old, new in _HF_BLOCK_RULES:
            if rest.startswith(old):
                return f"blocks.{index}.{new}{rest[len(old) :]}"
    if key.startswith(_HF_IGNORED):
        return None
    return key


def _is_extra(key: str) -> bool:
    return key == SPIECE_KEY or key == SCALED_FP8_MARKER or key.endswith(SCALE_SUFFIXES)


def _marker_name(key: str) -> str | None:
    """``spiece_model`` / ``scaled_fp8`` stored outside the encoder's prefix, under their bare name."""
    bare = key.rsplit(".", 1)[-1]
    return bare if bare in (SPIECE_KEY, SCALED_FP8_MARKER) else None


def to_official(src: TensorSource) -> TensorSource:
    """A lazy view of ``src`` with official names; ``spiece_model``/``scaled_fp8`` kept bare."""
    keys = list(src.keys())
    layout, prefix = find_prefix(keys)
    view = src.with_prefix_stripped(prefix, _marker_name)
    if layout == "hf":
        if "shared.weight" not in view and "encoder.embed_tokens.weight" in view:
            view = view.renamed(lambda k: "shared.weight" if k == "encoder.embed_tokens.weight" else k)
        view = view.renamed(_rename_hf)
    if "token_embedding.weight" not in view:
        raise CheckpointError(
            f"The umT5 encoder in {src.description} has no token embedding ('shared.weight' or "
            "'token_embedding.weight'): the file is incomplete. Re-download it."
        )
    return view


def model_keys(src: TensorSource) -> list[str]:
    """The tensors that are model weights (not tokenizer, marker or fp8 scales)."""
    return [k for k in src if not _is_extra(k)]
