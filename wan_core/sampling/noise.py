"""Seeded initial noise, drawn on the CPU so that a seed gives the same video on any device."""

from __future__ import annotations

import torch

_SEED_SPACE = 1 << 64  # torch.Generator.manual_seed accepts 0 .. 2**64 - 1


def seeded_noise(latent_shape: tuple[int, ...], seed: int, batch_size: int = 1) -> torch.Tensor:
    """Standard normal noise [batch_size, *latent_shape] fp32 on CPU; element i uses seed + i.

    Each element has its own generator, so element i of a batch equals a single run with
    seed + i (ComfyUI-style "batch of seeds").
    """
    out = []
    for i in range(int(batch_size)):
        gen = torch.Generator(device="cpu").manual_seed((int(seed) + i) % _SEED_SPACE)
        out.append(torch.randn(tuple(latent_shape), generator=gen, dtype=torch.float32))
    return torch.stack(out)
