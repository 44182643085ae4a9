"""Shared fakes for the conditioning tests (no tests here): a VAE and DiT configs, so layouts are testable alone.

The fake VAE follows the Wan frame rule (frame 0 alone, then groups of 4) and the
spatial stride, and maps RGB to z channels linearly *with a bias*, so that a grey
(zero) video does not encode to zero, as with a real VAE.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F


class FakeVAE:
    def __init__(self, z_dim: int = 16, stride: int = 8, version: str = "2.1"):
        self.config = SimpleNamespace(z_dim=z_dim, spatial_stride=stride, version=version)
        self.calls: list[tuple[int, ...]] = []

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, F, H, W] -> [B, z, (F - 1) // 4 + 1, H / s, W / s]."""
        self.calls.append(tuple(video.shape))
        b, _, frames, h, w = video.shape
        assert (frames - 1) % 4 == 0, frames
        first = video[:, :, :1]
        rest = video[:, :, 1:].reshape(b, 3, (frames - 1) // 4, 4, h, w).mean(3)
        temporal = torch.cat([first, rest], dim=2)
        s = self.config.spatial_stride
        pooled = F.avg_pool3d(temporal, kernel_size=(1, s, s))
        z = self.config.z_dim
        scale = torch.tensor([1.0 + c // 3 for c in range(z)]).view(1, z, 1, 1, 1)
        bias = torch.tensor([0.1 * (c + 1) for c in range(z)]).view(1, z, 1, 1, 1)
        return pooled[:, [c % 3 for c in range(z)]] * scale + bias


def dit_config(task: str, family: str = "wan2.1", **overrides) -> SimpleNamespace:
    """A DiT config with the fields validate_conditioning reads, for the released variants (spec 1.2)."""
    table = {
        "t2v": dict(in_dim=16, latent_channels=16, extra_channels=0, clip_dim=None, vace_layers=()),
        "i2v": dict(in_dim=36, latent_channels=16, extra_channels=20, clip_dim=1280, vace_layers=()),
        "flf2v": dict(in_dim=36, latent_channels=16, extra_channels=20, clip_dim=1280, clip_tokens=514, vace_layers=()),
        "vace": dict(in_dim=16, latent_channels=16, extra_channels=0, clip_dim=None, vace_layers=(0, 2)),
        "fun-control": dict(in_dim=48, latent_channels=16, extra_channels=32, clip_dim=1280, vace_layers=()),
        "ti2v": dict(
            in_dim=48, latent_channels=48, extra_channels=0, clip_dim=None, vace_layers=(), per_token_timesteps=True
        ),
    }
    fields = dict(family=family, task=task, out_dim=None, clip_tokens=None, per_token_timesteps=False)
    fields.update(table[task])
    fields["out_dim"] = fields["latent_channels"]
    fields.update(overrides)
    return SimpleNamespace(**fields)
