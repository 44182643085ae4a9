"""Tiny random-weight Wan VAEs (official key names) for tests and the tiny pipeline.

Every parameter is random, including RMS-norm gammas and biases, so no layer is
an identity or a zero that could hide a wiring bug. Widths come from
``wan_core.tiny_models.TINY``; pass other sizes to build wider VAEs.
"""

from __future__ import annotations

import math

import torch

from ..tiny_models import TINY, TinySizes
from .config import VAEConfig
from .model import WanVAE

OUTPUT_GAIN = 0.3  # shrinks the decoder's last conv so random frames stay mostly inside [-1, 1]


def tiny_vae_config(version: str = "2.1", sizes: TinySizes = TINY) -> VAEConfig:
    """Config of the tiny VAE: released structure, narrow widths from ``sizes``."""
    if version == "2.2":
        return VAEConfig("2.2", 48, sizes.vae22_base_dim, sizes.vae22_decoder_dim, patch_size=2)
    return VAEConfig("2.1", 16, sizes.vae21_base_dim, sizes.vae21_base_dim)


def random_tensor(
    name: str, shape: tuple[int, ...], gen: torch.Generator, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A random value for one parameter: fan-in scaled weights, gammas around 1, small biases.

    Uniform with unit variance (cheaper than normal for the 700 M-parameter released-width VAE).
    """
    x = torch.empty(shape, dtype=dtype).uniform_(-math.sqrt(3.0), math.sqrt(3.0), generator=gen)
    if name.endswith("gamma"):
        return 1.0 + 0.25 * x
    if name.endswith("bias") or len(shape) < 2:
        return 0.05 * x
    gain = OUTPUT_GAIN if name.startswith("decoder.head.2.") else 1.0
    return x.mul_(gain / math.sqrt(math.prod(shape[1:])))


def tiny_vae_state_dict(
    version: str = "2.1", seed: int = 0, sizes: TinySizes = TINY, *, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """Random weights of a Wan VAE with OFFICIAL names; deterministic for a given seed."""
    with torch.device("meta"):
        vae = WanVAE(tiny_vae_config(version, sizes))
    gen = torch.Generator().manual_seed(seed)
    return {name: random_tensor(name, tuple(p.shape), gen, dtype) for name, p in vae.named_parameters()}
