"""LoRA key names: every Wan format in the wild, normalised to official module paths.

A LoRA key is ``<prefix><module path><part>``:

* prefix: ``diffusion_model.``, ``model.diffusion_model.``, ``transformer.``,
  ``base_model.model.``, ``pipe.dit.`` (dotted) or ``lora_unet_``, ``lora_unet__``
  (VideoX-Fun), ``lycoris_``, ``lora_transformer_`` (module path with dots replaced
  by underscores);
* module path: official (``blocks.0.self_attn.q``) or diffusers
  (``blocks.0.attn1.to_q``), see WAN_SPEC section 3.6;
* part: ``.lora_A.weight``/``.lora_down.weight`` (down, [r, in]),
  ``.lora_B.weight``/``.lora_up.weight`` (up, [out, r]), ``.alpha``, ``.lora_B.bias``
  (PEFT lora_bias), ``.diff`` (full weight difference), ``.diff_b`` (bias
  difference), ``blocks.N.diff_m`` (modulation difference) or LyCORIS LoHa/LoKr
  factors (``.hada_w1_a`` ..., ``.lokr_w1`` ...).

Underscored paths cannot be split back into dots safely (``self_attn`` contains
an underscore), so they are resolved against the model's own parameter names with
:func:`underscore_table`, never by splitting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Parts of a key, longest first so ".diff_b" is not read as ".diff".
PART_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".lora_A.weight", "down"),
    (".lora_down.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora_up.weight", "up"),
    (".lora_B.bias", "up_bias"),
    (".lora_up.bias", "up_bias"),
    (".alpha", "alpha"),
    (".diff_b", "diff_b"),
    (".diff", "diff"),
    (".diff_m", "diff_m"),
    *((f".{name}", name) for name in ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "lokr_w1", "lokr_w1_a",
                                      "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")),
)
# Keys of adapter types we recognise but do not apply (reported, never silently used).
UNSUPPORTED_MARKERS = (".dora_scale", ".lora_mid.", ".hada_t", ".lokr_t", ".oft_", ".boft_", ".a1.", ".set_weight")

DOTTED_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "pipe.dit.", "transformer.",
                   "dit.", "model.")
UNDERSCORE_PREFIXES = ("lora_unet__", "lora_unet_", "lycoris_", "lora_transformer_")
PEFT_ADAPTER_NAME = re.compile(r"\.(lora_[AB]|lora_down|lora_up)\.[A-Za-z0-9_-]+\.(weight|bias)$")

# Official <-> diffusers module paths inside a block (``blocks.N.`` / ``vace_blocks.N.``).
BLOCK_RENAMES: tuple[tuple[str, str], ...] = (
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
    ("norm3", "norm2"),  # the affine LayerNorm before cross-attention
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
    ("modulation", "scale_shift_table"),
)
VACE_BLOCK_RENAMES: tuple[tuple[str, str], ...] = (("before_proj", "proj_in"), ("after_proj", "proj_out"))
TOP_RENAMES: tuple[tuple[str, str], ...] = (
    ("patch_embedding", "patch_embedding"),
    ("vace_patch_embedding", "vace_patch_embedding"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("img_emb.proj.0", "condition_embedder.image_embedder.norm1"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
    ("img_emb.proj.4", "condition_embedder.image_embedder.norm2"),
    ("img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed"),
    ("head.head", "proj_out"),
    ("head.modulation", "scale_shift_table"),
)
DIFFUSERS_MARKERS = (".attn1.", ".attn2.", ".ffn.net.", "condition_embedder.", "scale_shift_table", ".to_q", ".to_out.")
BLOCK_PATH = re.compile(r"^(blocks|vace_blocks)\.(\d+)\.(.+)$")
I2V_ONLY_MARKERS = ("k_img", "v_img", "norm_k_img", "img_emb", "add_k_proj", "add_v_proj", "norm_added_k",
                    "image_embedder")


@dataclass(frozen=True)
class ParsedKey:
    """One LoRA key split into its module path and part.

    ``path`` is dotted (official or diffusers names) unless ``underscored``.
    """

    key: str
    path: str
    part: str
    underscored: bool


def _strip_peft_adapter_name(key: str) -> str:
    """``x.lora_A.default.weight`` (PEFT in-memory naming) -> ``x.lora_A.weight``."""
    return PEFT_ADAPTER_NAME.sub(lambda m: f".{m.group(1)}.{m.group(2)}", key)


def split_part(key: str) -> tuple[str, str] | None:
    """``(stem, part)`` for a recognised key, else None."""
    for suffix, part in PART_SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)], part
    return None


def strip_prefix(stem: str) -> tuple[str, bool]:
    """Remove wrapper prefixes; returns (path, underscored)."""
    for prefix in UNDERSCORE_PREFIXES:
        if stem.startswith(prefix):
            path = stem[len(prefix):]
            return (path[len("diffusion_model_"):] if path.startswith("diffusion_model_") else path), True
    changed = True
    while changed:
        changed = False
        for prefix in DOTTED_PREFIXES:
            if stem.startswith(prefix) and len(stem) > len(prefix):
                stem = stem[len(prefix):]
                changed = True
    return stem, False


def parse_key(key: str) -> ParsedKey | None:
    """Split one LoRA key; None when the key is not a part we apply."""
    if any(marker in key for marker in UNSUPPORTED_MARKERS):
        return None
    split = split_part(_strip_peft_adapter_name(key))
    if split is None:
        return None
    stem, part = split
    path, underscored = strip_prefix(stem)
    if part == "diff_m":  # blocks.N.diff_m is the difference of blocks.N.modulation
        path, part = (path + ("_modulation" if underscored else ".modulation")), "diff"
    return ParsedKey(key, path, part, underscored)


def looks_diffusers(paths: Iterable[str]) -> bool:
    """True when dotted module paths use diffusers names (attn1/attn2/ffn.net/...)."""
    return any(marker in "." + p + "." for p in paths for marker in DIFFUSERS_MARKERS)


def _rename_path(path: str, to_official: bool) -> str:
    src, dst = (1, 0) if to_official else (0, 1)
    m = BLOCK_PATH.match(path)
    if m:
        kind, index, rest = m.groups()
        table = BLOCK_RENAMES + (VACE_BLOCK_RENAMES if kind == "vace_blocks" else ())
        for pair in table:
            if rest == pair[src]:
                return f"{kind}.{index}.{pair[dst]}"
        return path
    for pair in TOP_RENAMES:
        if path == pair[src]:
            return pair[dst]
    return path


def diffusers_to_official_path(path: str) -> str:
    """Official module/parameter path for a diffusers one (WAN_SPEC 3.6); unknown paths unchanged.

    Accepts module paths (``blocks.0.attn1.to_q``) and parameter names (``...to_q.weight``).
    """
    for leaf in (".weight", ".bias"):
        if path.endswith(leaf):
            return _rename_path(path[: -len(leaf)], to_official=True) + leaf
    return _rename_path(path, to_official=True)


def official_to_diffusers_path(path: str) -> str:
    """Inverse of :func:`diffusers_to_official_path`."""
    for leaf in (".weight", ".bias"):
        if path.endswith(leaf):
            return _rename_path(path[: -len(leaf)], to_official=False) + leaf
    return _rename_path(path, to_official=False)


def underscore_table(param_names: Iterable[str]) -> dict[str, str]:
    """``{underscored path: official path}`` built from a model's own parameter names.

    Covers module paths (``blocks_0_self_attn_q`` -> ``blocks.0.self_attn.q``), their
    diffusers spelling (``blocks_0_attn1_to_q``) and bare parameters such as
    ``blocks_0_modulation``.
    """
    table: dict[str, str] = {}
    for name in param_names:
        candidates = [name]
        for leaf in (".weight", ".bias"):
            if name.endswith(leaf):
                candidates.append(name[: -len(leaf)])
        for path in candidates:
            table.setdefault(path.replace(".", "_"), path)
            table.setdefault(official_to_diffusers_path(path).replace(".", "_"), path)
    return table


def is_i2v_only(path: str) -> bool:
    """Paths of the CLIP image branch (Wan2.1 I2V/FLF2V), absent from T2V and Wan2.2 I2V models."""
    return any(marker in path for marker in I2V_ONLY_MARKERS)


def block_index(name: str) -> int | None:
    """N for ``blocks.N.*`` (main blocks only), else None."""
    m = BLOCK_PATH.match(name)
    return int(m.group(2)) if m and m.group(1) == "blocks" else None
