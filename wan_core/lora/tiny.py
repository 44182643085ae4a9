"""Tiny random LoRAs in every supported format (for make-tiny-models and tests).

All formats written from the same (state dict, rank, seed) carry the same ΔW:
formats with ``.alpha`` keys store ``alpha = rank / 2`` (scale 0.5), formats
without bake the 0.5 into ``up``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError
from .keys import official_to_diffusers_path

if TYPE_CHECKING:
    from ..dit.config import DiTConfig

BLOCK_LINEARS = (
    "self_attn.q",
    "self_attn.k",
    "self_attn.v",
    "self_attn.o",
    "cross_attn.q",
    "cross_attn.k",
    "cross_attn.v",
    "cross_attn.o",
    "ffn.0",
    "ffn.2",
)
I2V_LINEARS = ("cross_attn.k_img", "cross_attn.v_img")
ALPHA_FRACTION = 0.5

# fmt -> (prefix, underscored, down name, up name, writes alpha, diffusers names)
FORMATS: dict[str, tuple[str, bool, str, str, bool, bool]] = {
    "comfyui": ("diffusion_model.", False, "lora_down", "lora_up", True, False),
    "diffusion_model_ab": ("diffusion_model.", False, "lora_A", "lora_B", False, False),
    "official": ("", False, "lora_A", "lora_B", False, False),
    "kohya": ("lora_unet_", True, "lora_down", "lora_up", True, False),
    "videox_fun": ("lora_unet__", True, "lora_down", "lora_up", True, False),
    "diffusers": ("transformer.", False, "lora_A", "lora_B", False, True),
    "peft": ("base_model.model.", False, "lora_A", "lora_B", False, False),
    "pipe_dit": ("pipe.dit.", False, "lora_A", "lora_B", False, False),
    "lycoris": ("lycoris_", True, "lora_down", "lora_up", True, False),
}


def _config_int(cfg: object, key: str) -> int:
    value = cfg.get(key) if isinstance(cfg, Mapping) else getattr(cfg, key, None)
    if value is None:
        raise InputError("tiny_lora_state_dict needs a DiT state dict or a config with dim, ffn_dim, num_layers.")
    return int(value)


def _shapes_from_config(cfg: object) -> dict[str, tuple[int, int]]:
    dim, ffn, layers = (_config_int(cfg, key) for key in ("dim", "ffn_dim", "num_layers"))
    shapes = {}
    for n in range(layers):
        for lin in BLOCK_LINEARS:
            out_f, in_f = {"ffn.0": (ffn, dim), "ffn.2": (dim, ffn)}.get(lin, (dim, dim))
            shapes[f"blocks.{n}.{lin}"] = (int(out_f), int(in_f))
    return shapes


def _shapes_from_state_dict(sd: Mapping) -> dict[str, tuple[int, int]]:
    shapes = {}
    for name, tensor in sd.items():
        parts = name.split(".")
        if len(parts) < 4 or parts[0] != "blocks" or not name.endswith(".weight"):
            continue
        path = name[: -len(".weight")]
        if path.split(".", 2)[2] in BLOCK_LINEARS + I2V_LINEARS and len(tensor.shape) == 2:
            shapes[path] = (int(tensor.shape[0]), int(tensor.shape[1]))
    return shapes


def random_factors(shapes: dict[str, tuple[int, int]], rank: int, seed: int) -> dict[str, tuple[torch.Tensor, ...]]:
    """{official module path: (down [r, in], up [out, r])} with ΔW = ALPHA_FRACTION · up @ down."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for path in sorted(shapes):
        out_f, in_f = shapes[path]
        down = torch.randn(rank, in_f, generator=gen) / in_f**0.5
        up = torch.randn(out_f, rank, generator=gen) * 0.2
        out[path] = (down, up)
    return out


def write_format(
    factors: dict[str, tuple[torch.Tensor, ...]], fmt: str, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """The state dict of ``factors`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise InputError(f"Unknown LoRA format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    prefix, underscored, down_name, up_name, alpha, diffusers = FORMATS[fmt]
    sd: dict[str, torch.Tensor] = {}
    for path, (down, up) in factors.items():
        name = official_to_diffusers_path(path) if diffusers else path
        name = prefix + (name.replace(".", "_") if underscored else name)
        rank = down.shape[0]
        sd[f"{name}.{down_name}.weight"] = down.to(dtype)
        sd[f"{name}.{up_name}.weight"] = (up if alpha else up * ALPHA_FRACTION).to(dtype)
        if alpha:
            sd[f"{name}.alpha"] = torch.tensor(rank * ALPHA_FRACTION)
    return sd


def tiny_lora_state_dict(
    dit_state_dict_or_config: Mapping[str, Any] | DiTConfig,
    rank: int = 4,
    seed: int = 0,
    fmt: str = "comfyui",
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """A random LoRA on every attention and FFN linear of the DiT's blocks, in format ``fmt``."""
    src = dit_state_dict_or_config
    is_sd = isinstance(src, Mapping) and any(isinstance(v, torch.Tensor) for v in src.values())
    shapes = _shapes_from_state_dict(src) if isinstance(src, Mapping) and is_sd else _shapes_from_config(src)
    if not shapes:
        raise InputError("No blocks.N attention/FFN weights found to put a LoRA on.")
    return write_format(random_factors(shapes, rank, seed), fmt, dtype)
