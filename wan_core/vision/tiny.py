"""Tiny random-weight CLIP vision towers for tests and smoke runs (fp32)."""

from __future__ import annotations

import os

import torch

from ..errors import InputError
from ..tiny_models import TINY, TinySizes


def _official_visual(sizes: TinySizes, gen: torch.Generator) -> dict[str, torch.Tensor]:
    w, mlp, p = sizes.clip_width, sizes.clip_mlp, sizes.clip_patch
    tokens = (sizes.clip_image_size // p) ** 2 + 1

    def rnd(*shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * std

    def norm(prefix: str) -> dict[str, torch.Tensor]:
        return {prefix + "weight": 1.0 + rnd(w, std=0.1), prefix + "bias": rnd(w, std=0.1)}

    sd = {
        "cls_embedding": rnd(1, 1, w, std=1.0),
        "pos_embedding": rnd(1, tokens, w, std=0.5),
        "patch_embedding.weight": rnd(w, 3, p, p, std=(3 * p * p) ** -0.5),
        **norm("pre_norm."),
    }
    for i in range(sizes.clip_layers):
        b = f"transformer.{i}."
        sd.update(norm(b + "norm1.") | norm(b + "norm2."))
        sd[b + "attn.to_qkv.weight"], sd[b + "attn.to_qkv.bias"] = rnd(3 * w, w, std=w**-0.5), rnd(3 * w, std=0.1)
        sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"] = rnd(w, w, std=w**-0.5), rnd(w, std=0.1)
        sd[b + "mlp.0.weight"], sd[b + "mlp.0.bias"] = rnd(mlp, w, std=w**-0.5), rnd(mlp, std=0.1)
        sd[b + "mlp.2.weight"], sd[b + "mlp.2.bias"] = rnd(w, mlp, std=mlp**-0.5), rnd(w, std=0.1)
    sd.update(norm("post_norm."))
    sd["head"] = rnd(w, w, std=w**-0.5)
    return sd


def official_to_comfyui(visual: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official open-clip visual names (no prefix) -> HF CLIPVisionModelWithProjection names (WAN_SPEC 6)."""
    top = {
        "patch_embedding.weight": "embeddings.patch_embedding.weight",
        "pre_norm.weight": "pre_layrnorm.weight",
        "pre_norm.bias": "pre_layrnorm.bias",
        "post_norm.weight": "post_layernorm.weight",
        "post_norm.bias": "post_layernorm.bias",
    }
    layer = {
        "norm1.": "layer_norm1.",
        "norm2.": "layer_norm2.",
        "attn.proj.": "self_attn.out_proj.",
        "mlp.0.": "mlp.fc1.",
        "mlp.2.": "mlp.fc2.",
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in visual.items():
        if key in top:
            out["vision_model." + top[key]] = value
        elif key == "cls_embedding":
            out["vision_model.embeddings.class_embedding"] = value.reshape(-1)
        elif key == "pos_embedding":
            out["vision_model.embeddings.position_embedding.weight"] = value[0]
        elif key == "head":
            out["visual_projection.weight"] = value.t().contiguous()
        else:
            _, index, rest = key.split(".", 2)
            base = f"vision_model.encoder.layers.{index}."
            if rest.startswith("attn.to_qkv."):
                part = rest.rsplit(".", 1)[-1]
                for name, chunk in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{base}self_attn.{name}_proj.{part}"] = chunk.clone()
            else:
                old = next(o for o in layer if rest.startswith(o))
                out[base + layer[old] + rest[len(old) :]] = value
    return out


def tiny_clip_state_dict(seed: int = 0, sizes: TinySizes = TINY, layout: str = "comfyui") -> dict[str, torch.Tensor]:
    """Random tiny CLIP vision weights: "comfyui" (HF names, ``vision_model.``) or "official" (``visual.``)."""
    visual = _official_visual(sizes, torch.Generator().manual_seed(seed))
    if layout == "official":
        return {"visual." + k: v for k, v in visual.items()}
    if layout == "comfyui":
        return official_to_comfyui(visual)
    raise InputError(f"layout must be 'comfyui' or 'official', got {layout!r}")


def write_tiny_clip(path: str | os.PathLike, seed: int = 0, layout: str = "comfyui") -> None:
    """Write ``tiny_clip_state_dict`` to a .safetensors (ComfyUI) or .pth (official) file."""
    sd = tiny_clip_state_dict(seed=seed, layout=layout)
    if os.fspath(path).endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(sd, os.fspath(path))
    else:
        torch.save(sd, os.fspath(path))
