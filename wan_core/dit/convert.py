"""Name maps between the official Wan DiT layout and diffusers' (WAN_SPEC 3.6).

Covers ``WanTransformer3DModel`` and ``WanVACETransformer3DModel``. Note the swapped
norms: official ``norm3`` (affine, before cross-attention) is diffusers ``norm2``.
``diffusers_to_official_name`` is also used for diffusers-named LoRA keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch

from ..errors import CheckpointError

# (official, diffusers) name fragments inside a block (``blocks.N.`` / ``vace_blocks.N.``).
BLOCK_PAIRS: tuple[tuple[str, str], ...] = (
    ("modulation", "scale_shift_table"),
    ("self_attn.q", "attn1.to_q"),
    ("self_attn.k", "attn1.to_k"),
    ("self_attn.v", "attn1.to_v"),
    ("self_attn.o", "attn1.to_out.0"),
    ("self_attn.norm_q", "attn1.norm_q"),
    ("self_attn.norm_k", "attn1.norm_k"),
    ("cross_attn.q", "attn2.to_q"),
    ("cross_attn.k", "attn2.to_k"),
    ("cross_attn.v", "attn2.to_v"),
    ("cross_attn.o", "attn2.to_out.0"),
    ("cross_attn.norm_q", "attn2.norm_q"),
    ("cross_attn.norm_k", "attn2.norm_k"),
    ("cross_attn.k_img", "attn2.add_k_proj"),
    ("cross_attn.v_img", "attn2.add_v_proj"),
    ("cross_attn.norm_k_img", "attn2.norm_added_k"),
    ("norm3", "norm2"),
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
    ("before_proj", "proj_in"),
    ("after_proj", "proj_out"),
)

TOP_PAIRS: tuple[tuple[str, str], ...] = (
    ("patch_embedding", "patch_embedding"),
    ("vace_patch_embedding", "vace_patch_embedding"),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("img_emb.proj.0", "condition_embedder.image_embedder.norm1"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
    ("img_emb.proj.4", "condition_embedder.image_embedder.norm2"),
    ("img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed"),
    ("head.modulation", "scale_shift_table"),
    ("head.head", "proj_out"),
)

# ``blocks.N.<rest>`` / ``vace_blocks.N.<rest>``; the rest is mapped with BLOCK_PAIRS and may end in any
# parameter suffix (weight, bias, scales, LoRA parts ...).
BLOCK_NAME = re.compile(r"^(blocks|vace_blocks)\.(\d+)\.(.+)$")
_DIFFUSERS_ONLY = ("norm_added_q",)  # present in some diffusers checkpoints, unused


def _map_fragment(rest: str, pairs: tuple[tuple[str, str], ...], forward: bool) -> str | None:
    """Map ``<module><suffix>``; the longest matching module name wins. None when nothing matches."""
    best = None
    for official, diffusers in pairs:
        src, dst = (official, diffusers) if forward else (diffusers, official)
        if (rest == src or rest.startswith(src + ".")) and (best is None or len(src) > len(best[0])):
            best = (src, dst)
    if best is None:
        return None
    return best[1] + rest[len(best[0]) :]


def _map_name(name: str, forward: bool) -> str | None:
    m = BLOCK_NAME.match(name)
    if m:
        mapped = _map_fragment(m.group(3), BLOCK_PAIRS, forward)
        return None if mapped is None else f"{m.group(1)}.{m.group(2)}.{mapped}"
    return _map_fragment(name, TOP_PAIRS, forward)


def official_to_diffusers_name(name: str) -> str | None:
    """``blocks.0.self_attn.q.weight`` -> ``blocks.0.attn1.to_q.weight`` (None when unknown)."""
    return _map_name(name, forward=True)


def diffusers_to_official_name(name: str) -> str | None:
    """``blocks.0.attn1.to_q.weight`` -> ``blocks.0.self_attn.q.weight``.

    ``name`` has no ``transformer.`` prefix. Returns None for names that are not
    part of a Wan DiT (or unused diffusers-only tensors such as ``norm_added_q``).
    """
    if any(part in name for part in _DIFFUSERS_ONLY):
        return None
    return _map_name(name, forward=False)


def is_diffusers_layout(keys: Iterable[str]) -> bool:
    """True when tensor names follow diffusers' WanTransformer3DModel."""
    return any(k.startswith("condition_embedder.") or ".attn1.to_q." in k for k in keys)


def official_to_diffusers(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official-layout state dict for diffusers (tensors are shared, not copied)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in sd.items():
        new = official_to_diffusers_name(name)
        if new is None:
            raise CheckpointError(
                f"No diffusers name for tensor {name!r}: it is not part of a Wan DiT (WAN_SPEC 3.6). "
                "Pass only the DiT's tensors, without a wrapper prefix."
            )
        out[new] = tensor
    return out
