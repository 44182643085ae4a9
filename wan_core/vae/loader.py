"""``wan_core.load_vae``: any Wan VAE file or state dict -> a ready :class:`WanVAE`.

Accepted layouts: official ``Wan2.1_VAE.pth`` / ``Wan2.2_VAE.pth`` (read with
``weights_only``), ComfyUI safetensors (official names, possibly under a
``first_stage_model.`` / ``vae.`` prefix) and diffusers ``AutoencoderKLWan``
(file or folder). Version and widths come from the keys and shapes.
"""

from __future__ import annotations

import logging

import torch

from ..checkpoints import CheckpointInput, guess_kind, open_checkpoint
from ..devices import resolve_device, resolve_dtype
from ..errors import CheckpointError, preview_keys
from ..materialize import materialize
from ..tensor_source import TensorSource
from .config import VAEConfig, detect_config
from .convert import diffusers_renamer, is_diffusers_layout
from .model import WanVAE

log = logging.getLogger(__name__)

VAE_PREFIXES = ("first_stage_model.", "vae.", "model.", "module.")
NON_BUFFER_STATE = ("latent_mean", "latent_std")
VAE_MARKERS = ("encoder.conv1.weight", "decoder.conv1.weight", "conv2.weight")
PREFIX_PROBES = ("decoder.conv1.weight", "decoder.conv_in.weight")


def strip_vae_prefix(src: TensorSource) -> TensorSource:
    """Keep only the VAE's tensors when they sit under a wrapper prefix (``vae.``, ``first_stage_model.``).

    Works for whole-pipeline checkpoints too, where the VAE is a minority of the keys.
    """
    for prefix in VAE_PREFIXES:
        if any(prefix + probe in src for probe in PREFIX_PROBES):
            return src.with_prefix_stripped(prefix)
    return src


def official_source(source: CheckpointInput | TensorSource) -> TensorSource:
    """Open ``source`` and present it with official Wan VAE key names."""
    src = strip_vae_prefix(open_checkpoint(source))
    if is_diffusers_layout(src.keys()):
        src = src.renamed(diffusers_renamer(list(src.keys())))
    if not all(k in src for k in VAE_MARKERS):
        raise CheckpointError(
            f"{src.description} is not a Wan VAE: it looks like {guess_kind(src.keys())} "
            f"(keys such as {preview_keys(src.keys(), 3)}). Select a Wan VAE file such as "
            "wan_2.1_vae.safetensors or wan2.2_vae.safetensors."
        )
    return src


def build_vae(config: VAEConfig, src: TensorSource, device: torch.device, dtype: torch.dtype) -> WanVAE:
    """Create the model on the meta device and fill it one tensor at a time (no second copy in RAM)."""
    with torch.device("meta"):
        vae = WanVAE(config)
    materialize(
        vae,
        src,
        device=device,
        dtype_rule=lambda _name, _stored: dtype,
        what=f"the Wan{config.version} VAE ({config.base_dim}/{config.decoder_dim} wide)",
        optional=NON_BUFFER_STATE,
    )
    vae.latent_mean = vae.latent_mean.to(device)
    vae.latent_std = vae.latent_std.to(device)
    return vae.eval().requires_grad_(False)


def load_vae(
    source: CheckpointInput | TensorSource,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> WanVAE:
    """Load a Wan2.1 or Wan2.2 VAE from a file, folder, or state dict.

    ``device`` None picks the best available; ``dtype`` None picks bf16 on
    accelerators with bf16, fp32 on CPU (see ``wan_core.devices.resolve_dtype``).
    Raises CheckpointError for files that are not a Wan VAE.
    """
    src = official_source(source)
    config = detect_config({k: src.shape(k) for k in src.keys()})
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    vae = build_vae(config, src, dev, dt)
    log.info(
        "Loaded Wan%s VAE (z %d, stride %dx%dx%d, widths %d/%d) on %s in %s",
        config.version, config.z_dim, config.temporal_stride, config.spatial_stride, config.spatial_stride,
        config.base_dim, config.decoder_dim, dev, dt,
    )  # fmt: skip
    return vae
