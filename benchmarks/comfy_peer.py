"""ComfyUI's native Wan DiT and VAE as the peer of our benchmarks, fed the same random weights.

ComfyUI is never part of this project: its checkout is found through ``--comfyui`` or
``COMFYUI_PATH`` and imported from there. Its modules are the ones a user's ComfyUI
runs (``comfy.ldm.wan.model.WanModel``, ``comfy.ldm.wan.vae`` / ``vae2_2``), built with
ComfyUI's own ops and dtypes: bf16 weights, fp32 patch embedding, bf16 activations.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch


def find_comfyui(flag: str | None) -> Path | None:
    """The ComfyUI checkout from the flag or COMFYUI_PATH; None when neither names one."""
    path = flag or os.environ.get("COMFYUI_PATH")
    if not path or not (Path(path) / "comfy" / "ldm" / "wan" / "model.py").is_file():
        return None
    return Path(path).resolve()


def import_comfyui(path: Path, cpu: bool):
    """Import ComfyUI's model code from ``path`` (appended to sys.path: our packages keep precedence)."""
    if str(path) not in sys.path:
        sys.path.append(str(path))
    import comfy.cli_args

    comfy.cli_args.args.cpu = cpu  # parsed from [] on import; CPU only for the smoke run
    import comfy.ldm.modules.attention as attention
    import comfy.ldm.wan.model as wan_model
    import comfy.ldm.wan.vae as vae21
    import comfy.ldm.wan.vae2_2 as vae22
    import comfy.model_management  # noqa: F401  (sets up ComfyUI's device state, as in a real run)
    import comfy.ops

    return {
        "WanModel": wan_model.WanModel,
        "vae": {"2.1": vae21.WanVAE, "2.2": vae22.WanVAE},
        "ops": comfy.ops.disable_weight_init,
        "attention": attention.optimized_attention.__name__,
    }


def native_dit(comfy: dict, config, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """ComfyUI's WanModel sharing ``weights`` (official names); small fp32 tensors get bf16 copies.

    ComfyUI keeps the patch embedding in fp32 and every other parameter in the model's
    dtype (bf16), as its loader does for a bf16 checkpoint.
    """
    with torch.device("meta"):
        model = comfy["WanModel"](
            model_type="t2v",
            patch_size=config.patch_size,
            text_len=config.text_len,
            in_dim=config.in_dim,
            dim=config.dim,
            ffn_dim=config.ffn_dim,
            freq_dim=config.freq_dim,
            text_dim=config.text_dim,
            out_dim=config.out_dim,
            num_heads=config.num_heads,
            num_layers=config.num_layers,
            eps=config.eps,
            dtype=torch.bfloat16,
            operations=comfy["ops"],
        )
    sd = {}
    for name, t in weights.items():
        want = torch.float32 if name.startswith("patch_embedding.") else torch.bfloat16
        sd[name] = t if t.dtype == want else t.to(want)
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def native_vae(comfy: dict, config) -> torch.nn.Module:
    """ComfyUI's Wan VAE with the structure of our ``config`` (on the meta device, no weights yet)."""
    common = dict(z_dim=config.z_dim, dim_mult=list(config.dim_mult), num_res_blocks=config.num_res_blocks)
    common.update(attn_scales=[], temperal_downsample=list(config.temporal_downsample), dropout=0.0)
    with torch.device("meta"):
        if config.version == "2.2":
            return comfy["vae"]["2.2"](dim=config.base_dim, dec_dim=config.decoder_dim, **common)
        return comfy["vae"]["2.1"](dim=config.base_dim, **common)


def random_vae_weights(model: torch.nn.Module, device: torch.device, dtype: torch.dtype, seed: int):
    """Random weights for every parameter of ``model`` (official names), drawn on ``device``.

    The same rule as ``wan_core.vae.tiny.random_tensor``: fan-in scaled weights, gammas
    near 1, small biases, a damped output conv so frames stay mostly inside [-1, 1].
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    out = {}
    for name, p in model.state_dict().items():
        x = torch.empty(p.shape, device=device, dtype=torch.float32).uniform_(
            -math.sqrt(3), math.sqrt(3), generator=gen
        )
        if name.endswith("gamma"):
            x = 1.0 + 0.25 * x
        elif name.endswith("bias") or p.ndim < 2:
            x = 0.05 * x
        else:
            gain = 0.3 if name.startswith("decoder.head.2.") else 1.0
            x = x.mul_(gain / math.sqrt(math.prod(p.shape[1:])))
        out[name] = x.to(dtype)
    return out
