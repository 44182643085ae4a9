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

from ..checkpoints import strip_wrappers
from ..dit.convert import BLOCK_NAME, diffusers_to_official_name, official_to_diffusers_name

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
    *(
        (f".{name}", name)
        for name in (
            "hada_w1_a",
            "hada_w1_b",
            "hada_w2_a",
            "hada_w2_b",
            "lokr_w1",
            "lokr_w1_a",
            "lokr_w1_b",
            "lokr_w2",
            "lokr_w2_a",
            "lokr_w2_b",
        )
    ),
)
# Keys of adapter types we recognise but do not apply (reported, never silently used).
UNSUPPORTED_MARKERS = (".dora_scale", ".lora_mid.", ".hada_t", ".lokr_t", ".oft_", ".boft_", ".a1.", ".set_weight")

DOTTED_PREFIXES = (
    "model.diffusion_model.",
    "diffusion_model.",
    "base_model.model.",
    "pipe.dit.",
    "transformer.",
    "dit.",
    "model.",
)
UNDERSCORE_PREFIXES = ("lora_unet__", "lora_unet_", "lycoris_", "lora_transformer_")
PEFT_ADAPTER_NAME = re.compile(r"\.(lora_[AB]|lora_down|lora_up)\.[A-Za-z0-9_-]+\.(weight|bias)$")

DIFFUSERS_MARKERS = (".attn1.", ".attn2.", ".ffn.net.", "condition_embedder.", "scale_shift_table", ".to_q", ".to_out.")
I2V_ONLY_MARKERS = (
    "k_img",
    "v_img",
    "norm_k_img",
    "img_emb",
    "add_k_proj",
    "add_v_proj",
    "norm_added_k",
    "image_embedder",
)


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
            path = stem[len(prefix) :]
            return (path[len("diffusion_model_") :] if path.startswith("diffusion_model_") else path), True
    return strip_wrappers(stem, DOTTED_PREFIXES), False


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


def diffusers_to_official_path(path: str) -> str:
    """Official module/parameter path for a diffusers one (WAN_SPEC 3.6); unknown paths unchanged.

    Accepts module paths (``blocks.0.attn1.to_q``) and parameter names (``...to_q.weight``);
    the name table is the DiT converter's (:mod:`wan_core.dit.convert`).
    """
    return diffusers_to_official_name(path) or path


def official_to_diffusers_path(path: str) -> str:
    """Inverse of :func:`diffusers_to_official_path`."""
    return official_to_diffusers_name(path) or path


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
    m = BLOCK_NAME.match(name)
    return int(m.group(2)) if m and m.group(1) == "blocks" else None
