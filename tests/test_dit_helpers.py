"""Shared helpers for the DiT tests (no tests here): diffusers references, layouts, inputs."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import save_file

from wan_core.dit.config import DiTConfig
from wan_core.dit.convert import official_to_diffusers
from wan_core.dit.tiny import CLIP_TOKENS, tiny_dit_config, tiny_dit_state_dict
from wan_core.fp8 import dequantize_state_dict, quantize_state_dict

COMFY_PREFIX = "model.diffusion_model."
LAYOUTS = ("official", "comfyui", "diffusers", "fp8_scaled")
LATENT_TF = (3, 4, 6)  # latent frames, height, width of the test inputs


def diffusers_reference(config: DiTConfig, official_sd: dict[str, torch.Tensor]):
    """A diffusers WanTransformer3DModel / WanVACETransformer3DModel holding ``official_sd`` (strict)."""
    from diffusers import WanTransformer3DModel, WanVACETransformer3DModel

    kwargs = dict(
        patch_size=config.patch_size,
        num_attention_heads=config.num_heads,
        attention_head_dim=config.head_dim,
        in_channels=config.in_dim,
        out_channels=config.out_dim,
        text_dim=config.text_dim,
        freq_dim=config.freq_dim,
        ffn_dim=config.ffn_dim,
        num_layers=config.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=config.eps,
    )
    if config.clip_dim is not None:
        kwargs.update(image_dim=config.clip_dim, added_kv_proj_dim=config.dim)
        if config.task == "flf2v":
            kwargs.update(pos_embed_seq_len=config.clip_tokens)
    if config.has_vace:
        model = WanVACETransformer3DModel(
            **kwargs, vace_layers=list(config.vace_layers), vace_in_channels=config.vace_in_dim
        )
    else:
        model = WanTransformer3DModel(**kwargs)
    model.load_state_dict(official_to_diffusers(official_sd), strict=True)
    return model.eval()


def layout_state_dict(official_sd: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """The same weights as written by each tool: official, ComfyUI prefix, diffusers names, scaled fp8."""
    if layout == "official":
        return dict(official_sd)
    if layout == "comfyui":
        return {COMFY_PREFIX + k: v for k, v in official_sd.items()}
    if layout == "diffusers":
        return official_to_diffusers(official_sd)
    if layout == "fp8_scaled":
        prefixed = {COMFY_PREFIX + k: v for k, v in official_sd.items()}
        return quantize_state_dict(
            prefixed, lambda name, t: ".blocks." in name or "embedding" in name, marker_prefix=COMFY_PREFIX
        )
    raise ValueError(layout)


def reference_weights(official_sd: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """The fp32 weights a layout stands for (fp8 files: the dequantised weights)."""
    if layout != "fp8_scaled":
        return official_sd
    deq = dequantize_state_dict(layout_state_dict(official_sd, layout))
    return {k[len(COMFY_PREFIX) :]: v for k, v in deq.items()}


@lru_cache(maxsize=None)
def cached_tiny(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    return tiny_dit_state_dict(variant, seed=seed)


@lru_cache(maxsize=None)
def cached_reference_output(variant: str, fp8: bool) -> torch.Tensor:
    """diffusers' output for ``make_inputs(tiny config)`` with the tiny weights (dequantised fp8 ones if asked)."""
    config = tiny_dit_config(variant)
    weights = reference_weights(cached_tiny(variant), "fp8_scaled" if fp8 else "official")
    return run_reference(diffusers_reference(config, weights), config, make_inputs(config))


def write_layout(tmp_path: Path, variant: str, layout: str, seed: int = 0) -> tuple[Path, dict[str, torch.Tensor]]:
    """Write a tiny variant in ``layout`` to a safetensors file; returns (path, reference fp32 weights)."""
    sd = cached_tiny(variant, seed=seed)
    path = tmp_path / f"{variant}_{layout}.safetensors"
    save_file({k: v.contiguous() for k, v in layout_state_dict(sd, layout).items()}, str(path))
    return path, reference_weights(sd, layout)


def write_hf_folder(folder: Path, sd: dict[str, torch.Tensor], config: dict | None, shards: int = 2) -> list[Path]:
    """HF-style folder: config.json + diffusion_pytorch_model-0000i-of-0000n.safetensors + index."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(sd)
    weight_map, paths = {}, []
    for i in range(shards):
        name = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k].contiguous() for k in keys[i::shards]}
        save_file(part, str(folder / name))
        weight_map.update({k: name for k in part})
        paths.append(folder / name)
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return paths


def make_inputs(config: DiTConfig, batch: int = 1, seed: int = 1) -> dict:
    """Random inputs for one forward: x, t, trimmed context list, clip_fea, y, vace_context."""
    gen = torch.Generator().manual_seed(seed)
    f, h, w = LATENT_TF
    inputs = {
        "x": torch.randn(batch, config.out_dim, f, h, w, generator=gen),
        "t": torch.rand(batch, generator=gen) * 1000,
        "context": [torch.randn(5 + 3 * i, config.text_dim, generator=gen) for i in range(batch)],
    }
    if config.extra_channels:
        inputs["y"] = torch.randn(batch, config.extra_channels, f, h, w, generator=gen)
    if config.clip_dim is not None:
        tokens = config.clip_tokens or CLIP_TOKENS
        inputs["clip_fea"] = torch.randn(batch, tokens, config.clip_dim, generator=gen)
    if config.has_vace:
        inputs["vace_context"] = torch.randn(batch, config.vace_in_dim, f, h, w, generator=gen)
    return inputs


def padded_context(context: list[torch.Tensor], length: int = 512) -> torch.Tensor:
    out = torch.zeros(len(context), length, context[0].shape[-1])
    for i, c in enumerate(context):
        out[i, : c.shape[0]] = c
    return out


def run_reference(ref, config: DiTConfig, inputs: dict, vace_scale: float = 1.0) -> torch.Tensor:
    """diffusers forward on the same inputs (context zero-padded to 512; FLF2V images stacked on batch)."""
    x = inputs["x"]
    if "y" in inputs:
        x = torch.cat([x, inputs["y"]], dim=1)
    kwargs = {}
    if "clip_fea" in inputs:
        clip = inputs["clip_fea"]
        if config.task == "flf2v":
            clip = clip.reshape(-1, clip.shape[1] // 2, clip.shape[-1])
        kwargs["encoder_hidden_states_image"] = clip
    if "vace_context" in inputs:
        kwargs["control_hidden_states"] = inputs["vace_context"]
        kwargs["control_hidden_states_scale"] = torch.full((len(config.vace_layers),), float(vace_scale))
    with torch.no_grad():
        return ref(x, inputs["t"], padded_context(inputs["context"]), return_dict=False, **kwargs)[0]


def tiny_config(variant: str) -> DiTConfig:
    return tiny_dit_config(variant)
