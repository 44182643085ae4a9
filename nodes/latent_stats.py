"""Per-channel statistics of the Wan VAE latents (WAN_SPEC 4.2 / 4.3), for LATENT conversion.

The sampler node has no VAE at hand but must hand ComfyUI the RAW VAE mean, so it looks
the statistics up by channel count (16: Wan2.1 VAE, 48: Wan2.2 VAE) in wan_core's single
copy of the published tables (``wan_core.vae.config.LATENT_STATS``, the VAE's own
normalisation). tests/test_nodes.py checks the conversion against the VAE and the spec.
"""

from __future__ import annotations

import torch

from wan_core.errors import InputError
from wan_core.vae.config import LATENT_STATS

_BY_CHANNELS = {z_dim: stats for (_version, z_dim), stats in LATENT_STATS.items()}


def latent_stats(channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) float32 [channels] of the Wan VAE with that many latent channels."""
    if channels not in _BY_CHANNELS:
        raise InputError(
            f"A Wan latent has 16 (Wan2.1 VAE) or 48 (Wan2.2 VAE) channels; got {channels}. "
            "Connect a latent made by a Wan VAE or Wan latent node."
        )
    mean, std = _BY_CHANNELS[channels]
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
