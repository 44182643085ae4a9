"""Tiny random-weight Wan DiTs (official names, fp32) for tests and the tiny pipeline.

Sizes come from :data:`wan_core.tiny_models.TINY` (dim 256 = 2 heads x 128 so that
detection is realistic). The init is deliberately non-trivial (random modulation,
norm weights, biases and ``emb_pos``) so that every input visibly changes the output.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from ..tiny_models import TINY, TinySizes
from .config import CameraFields, DiTConfig, camera_fields, variant_name

# variant -> (family, task, in_dim, out_dim, has_img, flf)
TINY_VARIANTS: dict[str, tuple[str, str, int, int, bool, bool]] = {
    "wan2.1-t2v": ("wan2.1", "t2v", 16, 16, False, False),
    "wan2.1-i2v": ("wan2.1", "i2v", 36, 16, True, False),
    "wan2.1-flf2v": ("wan2.1", "flf2v", 36, 16, True, True),
    "wan2.1-vace": ("wan2.1", "vace", 16, 16, False, False),
    "wan2.1-fun-control": ("wan2.1", "fun-control", 48, 16, True, False),
    "wan2.1-fun-inp": ("wan2.1", "i2v", 36, 16, True, False),
    "wan2.2-t2v": ("wan2.1", "t2v", 16, 16, False, False),
    "wan2.2-i2v": ("wan2.2", "i2v", 36, 16, False, False),
    "wan2.2-ti2v": ("wan2.2", "ti2v", 48, 48, False, False),
    "wan2.1-fun-camera": ("wan2.1", "fun-camera", 32, 16, True, False),
    "wan2.2-fun-camera": ("wan2.2", "fun-camera", 36, 16, False, False),
}

CLIP_TOKENS = 17  # tiny CLIP: 56 px / 14 px patches = 16 patches + class token


def tiny_dit_config(variant: str, sizes: TinySizes = TINY) -> DiTConfig:
    """The DiTConfig that detection reports for ``tiny_dit_state_dict(variant)``."""
    if variant not in TINY_VARIANTS:
        raise InputError(f"Unknown tiny DiT variant {variant!r}; use one of {', '.join(TINY_VARIANTS)}.")
    family, task, in_dim, out_dim, has_img, flf = TINY_VARIANTS[variant]
    vace = task == "vace"
    camera: CameraFields = camera_fields(out_dim) if task == "fun-camera" else {}
    return DiTConfig(
        variant=variant_name(family, task, None),
        family=family,
        task=task,
        size_label=None,
        dim=sizes.dit_dim,
        ffn_dim=sizes.dit_ffn,
        num_heads=sizes.dit_dim // 128,
        num_layers=sizes.dit_layers,
        in_dim=in_dim,
        out_dim=out_dim,
        text_dim=sizes.text_dim,
        freq_dim=sizes.dit_freq_dim,
        clip_dim=sizes.clip_width if has_img else None,
        clip_tokens=(2 * CLIP_TOKENS if flf else None) if has_img else None,
        vace_layers=tuple(sizes.vace_layers) if vace else (),
        vace_in_dim=96 if vace else None,
        per_token_timesteps=task == "ti2v",
        **camera,
    )


def _random_like(name: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Scaled random init: O(1) activations, visible modulation and biases."""
    leaf = name.rsplit(".", 1)[-1]
    if name.endswith("modulation"):
        return torch.randn(shape, generator=gen) * 0.3
    if name.endswith("emb_pos"):
        return torch.randn(shape, generator=gen) * 0.5
    if leaf == "bias":
        return torch.randn(shape, generator=gen) * 0.05
    if len(shape) == 1:  # norm weights
        return 1.0 + torch.randn(shape, generator=gen) * 0.1
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=gen) / math.sqrt(fan_in)


def tiny_dit_state_dict(variant: str, seed: int = 0, sizes: TinySizes = TINY) -> dict[str, torch.Tensor]:
    """Random official-layout fp32 state dict of a tiny DiT (see TINY_VARIANTS for the names)."""
    from .model import WanDiT

    config = tiny_dit_config(variant, sizes)
    model = WanDiT(config, device="meta")
    gen = torch.Generator().manual_seed(seed)
    return {name: _random_like(name, tuple(p.shape), gen) for name, p in model.state_dict().items()}
