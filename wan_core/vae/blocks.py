"""Building blocks shared by the Wan2.1 and Wan2.2 VAEs (WAN_SPEC.md section 4.1).

Every temporal operation is causal: frame ``t`` of an output depends on input
frames ``<= t`` only. That is what lets the VAE run a video in short chunks
(encode: 1, 4, 4, ... frames; decode: one latent frame at a time) and still give
the same result as one pass over the whole clip: each causal conv keeps the last
frames of its input in a :class:`ChunkCache` and prepends them to the next chunk.

Module and parameter names equal the official checkpoint's (``residual.0.gamma``,
``resample.1.weight``, ``time_conv.weight``), so a state dict loads without renaming.
Tensors are ``[B, C, T, H, W]`` unless said otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import kernels
from ..kernels.norm_silu import rms_norm_silu_into

CACHE_FRAMES = 2  # frames of history a 3x3x3 causal conv needs (2 * temporal padding 1)
HALF_DTYPES = (torch.float16, torch.bfloat16)
Layer = TypeVar("Layer", bound=nn.Module)


def layer_at(seq: nn.Sequential, index: int, kind: type[Layer]) -> Layer:
    """``seq[index]``, which must be a ``kind`` (the official layouts fix each position's layer type)."""
    layer = seq[index]
    if not isinstance(layer, kind):
        raise TypeError(f"{type(seq).__name__}[{index}] is a {type(layer).__name__}, not a {kind.__name__}")
    return layer


class _FirstChunk:
    """Marker stored by an ``upsample3d`` Resample after the first decode chunk (official "Rep")."""

    def __repr__(self) -> str:
        return "FIRST_CHUNK_SEEN"


FIRST_CHUNK_SEEN = _FirstChunk()


class ChunkCache:
    """Temporal state carried from one chunk to the next, one slot per causal module.

    ``first_chunk`` is True while the first chunk runs (Wan2.2's DupUp3D drops
    frames then). One cache belongs to one pass over one spatial region; a new
    clip or tile needs a new cache.
    """

    def __init__(self) -> None:
        self._slots: dict[int, Any] = {}  # cached frames [B, C, t, H, W], or FIRST_CHUNK_SEEN
        self.first_chunk = True

    def get(self, module: nn.Module) -> Any:
        return self._slots.get(id(module))

    def put(self, module: nn.Module, value: Any) -> None:
        self._slots[id(module)] = value


class CausalConv3d(nn.Conv3d):
    """Conv3d padded causally in time: ``2 * pt`` frames in front, none behind.

    Spatial padding is symmetric (``ph``, ``pw``) and done by the convolution itself.
    ``history`` (frames of the previous chunk's input) replaces as many of the leading
    zero frames. The input is assembled once in a frame buffer [history | x] (no ``cat``
    and ``pad`` copies); with a ``norm`` the fused RMSNorm + SiLU writes into it directly.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        pt, ph, pw = (padding,) * 3 if isinstance(padding, int) else padding
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(0, ph, pw))
        self.front = 2 * pt

    def _buffer(self, x: torch.Tensor, history: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(buffer [B, C, front + T, H, W] with the history/zero frames filled, its view for x)."""
        b, c, t, h, w = x.shape
        weight = self.weight
        last = weight.is_contiguous(memory_format=torch.channels_last_3d) and not weight.is_contiguous()
        fmt = torch.channels_last_3d if last else torch.contiguous_format  # what the conv will want
        buf = torch.empty((b, c, self.front + t, h, w), device=x.device, dtype=x.dtype, memory_format=fmt)
        kept = 0 if history is None else min(history.shape[2], self.front)
        buf[:, :, : self.front - kept].zero_()
        if history is not None and kept:
            buf[:, :, self.front - kept : self.front].copy_(history[:, :, -kept:])
        return buf, buf[:, :, self.front :]

    def forward(self, input: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:  # (Conv3d's name)
        if self.front == 0:
            return super().forward(input)
        buf, body = self._buffer(input, history)
        body.copy_(input)
        return super().forward(buf)

    def step(self, x: torch.Tensor, cache: ChunkCache, norm: RMSNorm | None = None) -> torch.Tensor:
        """Run on one chunk (``norm``: on ``SiLU(norm(x))``), using and updating this conv's cached frames.

        The cache keeps the last 2 input frames; a 1-frame chunk keeps
        [previous chunk's last frame, this frame] (official rule; zeros before the first).
        """
        return self.convolve(self.prepare(x, cache, norm))

    def prepare(self, x: torch.Tensor, cache: ChunkCache, norm: RMSNorm | None = None) -> torch.Tensor:
        """The conv's input for one chunk: [cached frames | x or SiLU(norm(x))]; updates the cache.

        Split from :meth:`convolve` so that a caller can drop ``x`` before the conv runs
        (one full-size activation less at the decoder's peak).
        """
        if self.front == 0:
            return F.silu(norm(x)) if norm is not None else x
        buf, body = self._buffer(x, cache.get(self))
        if norm is None:
            body.copy_(x)
        elif not (kernels.usable(x) and x.dtype in HALF_DTYPES and rms_norm_silu_into(x, norm.gamma, body)):
            body.copy_(F.silu(norm(x)))
        cache.put(self, buf[:, :, -CACHE_FRAMES:].clone())
        return buf

    def convolve(self, prepared: torch.Tensor) -> torch.Tensor:
        return super().forward(prepared)


class RMSNorm(nn.Module):
    """``F.normalize(x, dim=1) * sqrt(C) * gamma``: L2 norm over channels (eps 1e-12).

    ``gamma`` is ``[C, 1, 1, 1]`` for 5-D inputs and ``[C, 1, 1]`` for 4-D
    ``images`` (the attention block). Half-precision inputs are normalised in fp32.
    """

    def __init__(self, dim: int, images: bool = False) -> None:
        super().__init__()
        shape = (dim, 1, 1) if images else (dim, 1, 1, 1)
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float() if x.dtype in HALF_DTYPES else x
        return (F.normalize(xf, dim=1) * self.scale).to(x.dtype) * self.gamma


class ResidualBlock(nn.Module):
    """``x -> conv(silu(norm(conv(silu(norm(x)))))) + shortcut(x)``; shortcut is a 1x1x1 conv if widths differ."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim),
            nn.SiLU(),
            nn.Dropout(0.0),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: ChunkCache) -> torch.Tensor:
        r = self.residual
        first, second = layer_at(r, 2, CausalConv3d), layer_at(r, 6, CausalConv3d)
        h = self.shortcut(x)
        buf = first.prepare(x, cache, norm=layer_at(r, 0, RMSNorm))
        y = first.convolve(buf)
        del buf  # before the next buffer is allocated
        buf = second.prepare(y, cache, norm=layer_at(r, 3, RMSNorm))
        del y  # the conv input is in buf now: one full-size activation less at the peak
        return second.convolve(buf).add_(h)


def per_frame(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D module to every frame: [B, C, T, H, W] -> [B, C', T, H', W']."""
    b, c, t, h, w = x.shape
    y = fn(x.transpose(1, 2).reshape(b * t, c, h, w))
    return y.view(b, t, *y.shape[1:]).transpose(1, 2)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H*W positions of each frame, plus identity.

    ``to_qkv`` (1x1 conv, C -> 3C, channels ordered q, k, v), softmax scale 1/sqrt(C).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, C, H, W] (N = frames x batch)."""
        n, c, h, w = x.shape
        qkv = self.to_qkv(self.norm(x)).reshape(n, 1, 3 * c, h * w).transpose(2, 3)  # [N, 1, HW, 3C]
        q, k, v = qkv.chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(q, k, v)  # [N, 1, HW, C]
        return self.proj(y.squeeze(1).transpose(1, 2).reshape(n, c, h, w))

    def forward(self, x: torch.Tensor, cache: ChunkCache | None = None) -> torch.Tensor:
        return x + per_frame(self.attend, x)


class Upsample2x(nn.Module):
    """Nearest-exact x2 spatial upsampling (copies values, so the official fp32 round trip changes nothing)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest-exact")


RESAMPLE_MODES = ("downsample2d", "downsample3d", "upsample2d", "upsample3d")


class Resample(nn.Module):
    """Spatial x2 down/up-sampling per frame, optionally with causal temporal x2 (``*3d`` modes).

    * ``downsample*``: ZeroPad2d(right 1, bottom 1) + Conv2d(dim, dim, 3, stride 2); ``3d`` then
      halves time with ``time_conv`` (k=3, stride 2) over [previous chunk's last frame, chunk];
      the first chunk passes through unchanged.
    * ``upsample*``: ``3d`` first doubles time with ``time_conv`` (dim -> 2 dim, the halves become
      frames 2t and 2t+1; skipped on the first chunk), then nearest-exact x2 + Conv2d(dim, out_dim, 3).
    """

    def __init__(self, dim: int, mode: str, out_dim: int | None = None) -> None:
        super().__init__()
        if mode not in RESAMPLE_MODES:
            raise ValueError(f"Resample mode {mode!r} is not one of {RESAMPLE_MODES}")
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(Upsample2x(), nn.Conv2d(dim, out_dim or dim, 3, padding=1))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: torch.Tensor, cache: ChunkCache) -> torch.Tensor:
        if self.mode == "upsample3d":
            x = self.double_frames(x, cache)
        x = per_frame(self.resample, x)
        if self.mode == "downsample3d":
            x = self.halve_frames(x, cache)
        return x

    def double_frames(self, x: torch.Tensor, cache: ChunkCache) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, C, 2T, H, W], except on the first chunk (returned as is)."""
        state = cache.get(self.time_conv)
        if state is None:
            cache.put(self.time_conv, FIRST_CHUNK_SEEN)
            return x
        keep = x[:, :, -CACHE_FRAMES:].clone()
        if keep.shape[2] < CACHE_FRAMES:
            before = torch.zeros_like(keep) if state is FIRST_CHUNK_SEEN else state[:, :, -1:]
            keep = torch.cat([before, keep], dim=2)
        y = self.time_conv(x) if state is FIRST_CHUNK_SEEN else self.time_conv(x, state)
        cache.put(self.time_conv, keep)
        b, c2, t, h, w = y.shape
        y = y.view(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5)  # [B, C, T, 2, H, W]
        return y.reshape(b, c2 // 2, 2 * t, h, w)

    def halve_frames(self, x: torch.Tensor, cache: ChunkCache) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, C, T/2, H, W] using the previous chunk's last frame; first chunk as is."""
        state = cache.get(self.time_conv)
        cache.put(self.time_conv, x[:, :, -1:].clone())
        if state is None:
            return x
        return self.time_conv(torch.cat([state, x], dim=2))


class MiddleBlock(nn.ModuleList):
    """``middle.0`` ResidualBlock, ``middle.1`` AttentionBlock, ``middle.2`` ResidualBlock."""

    def __init__(self, dim: int) -> None:
        super().__init__([ResidualBlock(dim, dim), AttentionBlock(dim), ResidualBlock(dim, dim)])

    def forward(self, x: torch.Tensor, cache: ChunkCache) -> torch.Tensor:
        for layer in self:
            x = layer(x, cache)
        return x


class OutputHead(nn.Sequential):
    """``head.0`` RMSNorm, ``head.1`` SiLU, ``head.2`` causal 3x3x3 conv."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(RMSNorm(in_dim), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: ChunkCache) -> torch.Tensor:  # type: ignore[override]
        return layer_at(self, 2, CausalConv3d).step(x, cache, norm=layer_at(self, 0, RMSNorm))
