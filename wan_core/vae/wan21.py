"""Wan2.1 VAE encoder and decoder (z 16, stride 4x8x8; WAN_SPEC.md 4.2).

Stages are flat lists: ``encoder.downsamples.N`` / ``decoder.upsamples.N`` are
residual blocks and resample layers in order. The decoder's upsample convs halve
the width (dim -> dim // 2), so each later stage's first block widens it again.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import CausalConv3d, ChunkCache, MiddleBlock, OutputHead, Resample, ResidualBlock
from .config import VAEConfig


class Encoder21(nn.Module):
    """Video chunk [B, 3, T, H, W] -> [B, 2z, T', H/8, W/8] (mean and log-variance, before ``conv1``)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.base_dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(cfg.in_channels, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        last = len(cfg.dim_mult) - 1
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != last:
                layers.append(Resample(out_dim, "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"))
        self.downsamples = nn.ModuleList(layers)
        self.middle = MiddleBlock(dims[-1])
        self.head = OutputHead(dims[-1], cfg.z_dim * 2)

    def forward(self, x: torch.Tensor, cache: ChunkCache) -> torch.Tensor:
        x = self.conv1.step(x, cache)
        for layer in self.downsamples:
            x = layer(x, cache)
        return self.head(self.middle(x, cache), cache)


class Decoder21(nn.Module):
    """Latent chunk [B, z, t, h, w] -> video frames [B, 3, T, 8h, 8w] (unclamped)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.decoder_dim * m for m in (mult[-1], *reversed(mult))]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = MiddleBlock(dims[0])
        layers: list[nn.Module] = []
        last = len(mult) - 1
        for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                in_dim //= 2  # the previous stage's upsample conv halved the width
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResidualBlock(in_dim, out_dim))
                in_dim = out_dim
            if i != last:
                mode = "upsample3d" if cfg.temporal_upsample[i] else "upsample2d"
                layers.append(Resample(out_dim, mode, out_dim=out_dim // 2))
        self.upsamples = nn.ModuleList(layers)
        self.head = OutputHead(dims[-1], cfg.in_channels)

    def forward(self, x: torch.Tensor, cache: ChunkCache) -> torch.Tensor:
        x = self.middle(self.conv1.step(x, cache), cache)
        for layer in self.upsamples:
            x = layer(x, cache)
        return self.head(x, cache)
