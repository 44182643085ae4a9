"""Wan2.2 VAE encoder and decoder (z 48, patchify 2, stride 4x16x16; WAN_SPEC.md 4.3).

Differences from Wan2.1: the video is patchified (2x2 pixels -> 12 channels)
before the encoder and unpatchified after the decoder; each stage is a residual
unit whose shortcut is a parameter-free space/time reshuffle (AvgDown3D in the
encoder, DupUp3D in the decoder); upsample convs keep the width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import CausalConv3d, ChunkCache, MiddleBlock, OutputHead, Resample, ResidualBlock
from .config import VAEConfig


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, C*p*p, T, H/p, W/p]; channel ``c*p*p + r*p + q`` (q row offset, r column offset)."""
    if p == 1:
        return x
    b, c, t, h, w = x.shape
    x = x.view(b, c, t, h // p, p, w // p, p)  # [b, c, t, h', q, w', r]
    return x.permute(0, 1, 6, 4, 2, 3, 5).reshape(b, c * p * p, t, h // p, w // p)


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: [B, C*p*p, T, h, w] -> [B, C, T, h*p, w*p]."""
    if p == 1:
        return x
    b, cpp, t, h, w = x.shape
    c = cpp // (p * p)
    x = x.view(b, c, p, p, t, h, w)  # [b, c, r, q, t, h, w]
    return x.permute(0, 1, 4, 5, 3, 6, 2).reshape(b, c, t, h * p, w * p)


class AvgDown3D(nn.Module):
    """Parameter-free shortcut: fold each (ft x fs x fs) neighbourhood into channels, average groups.

    [B, C_in, T, H, W] -> [B, C_out, ceil(T/ft), H/fs, W/fs]; time is zero-padded in front
    to a multiple of ``ft``; channel groups of size ``C_in*ft*fs*fs / C_out`` are averaged.
    """

    def __init__(self, in_dim: int, out_dim: int, ft: int, fs: int) -> None:
        super().__init__()
        self.out_dim, self.ft, self.fs = out_dim, ft, fs
        self.group = in_dim * ft * fs * fs // out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ft, fs = self.ft, self.fs
        x = F.pad(x, (0, 0, 0, 0, (-x.shape[2]) % ft, 0))
        b, c, t, h, w = x.shape
        x = x.view(b, c, t // ft, ft, h // fs, fs, w // fs, fs)
        x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)  # [b, c, ft, fs, fs, t', h', w']
        x = x.reshape(b, self.out_dim, self.group, t // ft, h // fs, w // fs)
        return x.mean(dim=2)


class DupUp3D(nn.Module):
    """Parameter-free shortcut, the inverse layout of AvgDown3D with channel duplication.

    [B, C_in, T, H, W] -> [B, C_out, T*ft, H*fs, W*fs]; on the first decode chunk the
    first ``ft - 1`` output frames are dropped (the causal first frame is not doubled).
    """

    def __init__(self, in_dim: int, out_dim: int, ft: int, fs: int) -> None:
        super().__init__()
        self.out_dim, self.ft, self.fs = out_dim, ft, fs
        self.repeats = out_dim * ft * fs * fs // in_dim

    def forward(self, x: torch.Tensor, first_chunk: bool) -> torch.Tensor:
        ft, fs = self.ft, self.fs
        b, _, t, h, w = x.shape
        x = x.repeat_interleave(self.repeats, dim=1).view(b, self.out_dim, ft, fs, fs, t, h, w)
        x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)  # [b, c, t, ft, h, fs, w, fs]
        x = x.reshape(b, self.out_dim, t * ft, h * fs, w * fs)
        return x[:, :, ft - 1 :] if first_chunk else x


class DownStage(nn.Module):
    """``encoder.downsamples.i``: residual blocks (+ Resample) plus an AvgDown3D shortcut."""

    def __init__(self, in_dim: int, out_dim: int, num_res: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.avg_shortcut = AvgDown3D(in_dim, out_dim, 2 if temporal else 1, 2 if spatial else 1)
        layers: list[nn.Module] = []
        for _ in range(num_res):
            layers.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if spatial:
            layers.append(Resample(out_dim, "downsample3d" if temporal else "downsample2d"))
        self.downsamples = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, cache: ChunkCache) -> torch.Tensor:
        shortcut = self.avg_shortcut(x)
        for layer in self.downsamples:
            x = layer(x, cache)
        return x + shortcut


class UpStage(nn.Module):
    """``decoder.upsamples.i``: residual blocks (+ Resample) plus a DupUp3D shortcut when it upsamples."""

    def __init__(self, in_dim: int, out_dim: int, num_res: int, temporal: bool, spatial: bool) -> None:
        super().__init__()
        self.avg_shortcut = DupUp3D(in_dim, out_dim, 2 if temporal else 1, 2) if spatial else None
        layers: list[nn.Module] = []
        for _ in range(num_res):
            layers.append(ResidualBlock(in_dim, out_dim))
            in_dim = out_dim
        if spatial:
            layers.append(Resample(out_dim, "upsample3d" if temporal else "upsample2d", out_dim=out_dim))
        self.upsamples = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, cache: ChunkCache) -> torch.Tensor:
        shortcut = self.avg_shortcut(x, cache.first_chunk) if self.avg_shortcut is not None else None
        for layer in self.upsamples:
            x = layer(x, cache)
        return x if shortcut is None else x + shortcut


class Encoder22(nn.Module):
    """Patchified chunk [B, 12, T, H/2, W/2] -> [B, 2z, T', H/16, W/16] (before ``conv1``)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        dims = [cfg.base_dim * m for m in (1, *cfg.dim_mult)]
        last = len(cfg.dim_mult) - 1
        self.conv1 = CausalConv3d(cfg.in_channels, dims[0], 3, padding=1)
        self.downsamples = nn.ModuleList(
            DownStage(a, b, cfg.num_res_blocks, i != last and cfg.temporal_downsample[i], i != last)
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))
        )
        self.middle = MiddleBlock(dims[-1])
        self.head = OutputHead(dims[-1], cfg.z_dim * 2)

    def forward(self, x: torch.Tensor, cache: ChunkCache) -> torch.Tensor:
        x = self.conv1.step(x, cache)
        for stage in self.downsamples:
            x = stage(x, cache)
        return self.head(self.middle(x, cache), cache)


class Decoder22(nn.Module):
    """Latent chunk [B, z, t, h, w] -> patchified frames [B, 12, T, 8h, 8w] (unclamped)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.decoder_dim * m for m in (mult[-1], *reversed(mult))]
        last = len(mult) - 1
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = MiddleBlock(dims[0])
        self.upsamples = nn.ModuleList(
            UpStage(a, b, cfg.num_res_blocks + 1, i != last and cfg.temporal_upsample[i], i != last)
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))
        )
        self.head = OutputHead(dims[-1], cfg.in_channels)

    def forward(self, x: torch.Tensor, cache: ChunkCache) -> torch.Tensor:
        x = self.middle(self.conv1.step(x, cache), cache)
        for stage in self.upsamples:
            x = stage(x, cache)
        return self.head(x, cache)
