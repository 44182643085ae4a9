"""Wan-Fun camera adapter (``control_adapter``): Plücker rays -> tokens added to the patch embedding.

Released Fun-Camera checkpoints (Wan2.1 Fun Control Camera V1.1, Wan2.2 Fun camera) carry
``control_adapter.conv`` and ``control_adapter.residual_blocks.N.conv{1,2}``. The camera input
is ``[B, 24, T, H, W]`` at pixel resolution: 6 Plücker channels of the 4 pixel frames behind
each latent frame (see :mod:`wan_core.conditioning.camera`). Per latent frame it is
pixel-unshuffled by the VAE stride ``s`` (8, or 16 for the Wan2.2 VAE) to ``[24 s², h, w]``,
projected to the DiT width by a 2x2 stride-2 convolution (the patch grid), then refined by
residual blocks ``x + conv2(relu(conv1(x)))``. The result ``[B, D, T, h/2, w/2]`` is added to
the patch-embedded latent before it is flattened into tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConditioningError


class CameraResidualBlock(nn.Module):
    """``x + conv2(relu(conv1(x)))`` with 3x3 convolutions at the DiT width."""

    def __init__(self, dim: int, device=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1, device=device)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class CameraAdapter(nn.Module):
    """``control_adapter``: camera ``[B, channels, T, H, W]`` -> ``[B, dim, T, H/(s*ph), W/(s*pw)]``."""

    def __init__(
        self,
        channels: int,
        dim: int,
        downscale: int,
        patch: tuple[int, int],
        residual_blocks: int = 1,
        device=None,
    ) -> None:
        super().__init__()
        self.channels, self.downscale = channels, downscale
        self.conv = nn.Conv2d(channels * downscale * downscale, dim, patch, stride=patch, device=device)
        self.residual_blocks = nn.Sequential(*(CameraResidualBlock(dim, device=device) for _ in range(residual_blocks)))

    def forward(self, camera: torch.Tensor) -> torch.Tensor:
        if camera.ndim != 5 or camera.shape[1] != self.channels:
            raise ConditioningError(
                f"Camera conditioning has shape {tuple(camera.shape)}; this model expects [B, {self.channels}, T, H, W] "
                "(Plücker rays at pixel size): build it with the Wan Fun Camera node / camera_conditioning."
            )
        b, c, t, h, w = camera.shape
        s = self.downscale
        if h % s or w % s:
            raise ConditioningError(
                f"Camera conditioning is {w}x{h} pixels, not a multiple of the VAE stride {s}: "
                "build it at the video's width and height."
            )
        frames = camera.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)  # one image per latent frame
        x = self.residual_blocks(self.conv(F.pixel_unshuffle(frames, s)))
        return x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)
