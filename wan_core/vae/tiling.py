"""Spatial tiling with overlap blending, and the automatic fall-back to it on out-of-memory.

Time needs no tiling: the causal chunking (1, 4, 4, ... frames in, one latent
frame out) already keeps memory independent of the clip length and is exact.
Space is what makes a 720p decode large, so a frame can be split into
overlapping square tiles; each tile runs the whole chunked pass with its own
caches, and overlaps are blended with linear ramps. Tiles see less context than
the full frame, so a tiled result differs slightly from an untiled one near seams.

Tiles are laid out on the LATENT grid (so they align with the VAE stride); tile
size and overlap are given in pixels and rounded down to whole latent positions.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..devices import empty_cache
from ..errors import InputError
from ..progress import RunHooks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileOptions:
    """Square spatial tiles of ``tile_size`` pixels overlapping by ``overlap`` pixels.

    Both are rounded down to multiples of the VAE's spatial stride (8 for Wan2.1,
    16 for Wan2.2); a tile is at least one latent position.
    """

    tile_size: int = 256
    overlap: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.tile_size, int) or self.tile_size <= 0:
            raise InputError(f"Tile size must be a positive number of pixels, got {self.tile_size!r}.")
        if not isinstance(self.overlap, int) or not 0 <= self.overlap < self.tile_size:
            raise InputError(
                f"Tile overlap must be >= 0 and smaller than the tile size ({self.tile_size} px), got "
                f"{self.overlap!r}. Use e.g. a quarter of the tile size."
            )


# Tried in order when an untiled pass runs out of accelerator memory.
FALLBACK_TILES = (TileOptions(256, 64), TileOptions(128, 32))

Span = tuple[int, int]
# Given an input region, yield (first output frame, output chunk [B, C, t, h, w]) in order.
ChunkFn = Callable[[torch.Tensor], Iterator[tuple[int, torch.Tensor]]]


def tile_spans(length: int, tile: int, overlap: int) -> list[Span]:
    """Start/end pairs of tiles of size ``tile`` covering ``0..length``; the last one ends at ``length``."""
    if length <= tile:
        return [(0, length)]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return [(s, s + tile) for s in starts]


def ramp(size: int, span: Span, length: int, fade: int, device: torch.device) -> torch.Tensor:
    """Blend weights [size] (fp32, > 0): rise over ``fade`` samples where a tile starts inside the frame,
    fall over ``fade`` samples where it ends inside the frame, 1 elsewhere."""
    w = torch.ones(size, device=device)
    fade = min(fade, size)
    if fade > 0:
        up = (torch.arange(fade, device=device, dtype=torch.float32) + 0.5) / fade
        if span[0] > 0:
            w[:fade] = torch.minimum(w[:fade], up)
        if span[1] < length:
            w[size - fade :] = torch.minimum(w[size - fade :], up.flip(0))
    return w


@dataclass(frozen=True)
class TileGrid:
    """Tiles on the latent grid. ``in_scale`` / ``out_scale``: input / output units per latent position."""

    rows: list[Span]
    cols: list[Span]
    height: int  # latent positions
    width: int
    overlap: int  # latent positions
    in_scale: int
    out_scale: int

    @classmethod
    def build(
        cls, height: int, width: int, opts: TileOptions | None, stride: int, in_scale: int, out_scale: int
    ) -> TileGrid:
        if opts is None:
            return cls([(0, height)], [(0, width)], height, width, 0, in_scale, out_scale)
        tile = max(1, opts.tile_size // stride)
        overlap = min(opts.overlap // stride, tile - 1)
        rows, cols = tile_spans(height, tile, overlap), tile_spans(width, tile, overlap)
        return cls(rows, cols, height, width, overlap, in_scale, out_scale)

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    def weights(self, row: Span, col: Span, device: torch.device) -> torch.Tensor:
        """Blend weights [h_out, w_out] of one tile in output units."""
        s, fade = self.out_scale, self.overlap * self.out_scale
        wy = ramp((row[1] - row[0]) * s, (row[0] * s, row[1] * s), self.height * s, fade, device)
        wx = ramp((col[1] - col[0]) * s, (col[0] * s, col[1] * s), self.width * s, fade, device)
        return wy[:, None] * wx[None, :]


def run_tiled(
    chunks: ChunkFn, src: torch.Tensor, out: torch.Tensor, grid: TileGrid, hooks: RunHooks, steps_per_tile: int
) -> torch.Tensor:
    """Fill ``out`` [B, C, T, H, W] (fp32) from ``src`` tile by tile; one hooks.step per chunk.

    A single tile writes its chunks straight into ``out``; several tiles are
    accumulated with blend weights and divided by the summed weights at the end.
    """
    total, done = grid.count * steps_per_tile, 0
    weight_sum = None if grid.count == 1 else torch.zeros(out.shape[-2:], device=out.device)  # None: one tile
    if weight_sum is not None:
        out.zero_()
    si, so = grid.in_scale, grid.out_scale
    for row, col in itertools.product(grid.rows, grid.cols):
        tile_src = src[..., row[0] * si : row[1] * si, col[0] * si : col[1] * si]
        ys, xs = slice(row[0] * so, row[1] * so), slice(col[0] * so, col[1] * so)
        w = None if weight_sum is None else grid.weights(row, col, out.device)
        for t0, y in chunks(tile_src):
            frames = slice(t0, t0 + y.shape[2])
            if w is None:
                out[:, :, frames] = y
            else:
                out[:, :, frames, ys, xs] += y.to(out.device, out.dtype) * w
            del y
            done += 1
            hooks.step(done, total)
        if weight_sum is not None and w is not None:
            weight_sum[ys, xs] += w
    if weight_sum is not None:
        out /= weight_sum
    return out


def run_with_fallback(
    run: Callable[[TileOptions | None], torch.Tensor],
    tiling: TileOptions | None,
    device: torch.device,
    what: str,
) -> torch.Tensor:
    """``run(tiling)``; when untiled (``tiling is None``) runs out of memory, retry with smaller tiles.

    The retry happens outside the ``except`` block so that the failed attempt's
    tensors (held by the traceback) are freed before the next one starts.
    """
    if tiling is not None:
        return run(tiling)
    attempts: list[TileOptions | None] = [None, *FALLBACK_TILES]
    for i, opts in enumerate(attempts):
        try:
            return run(opts)
        except torch.OutOfMemoryError:
            if i == len(attempts) - 1:
                raise
        nxt = FALLBACK_TILES[i]  # = attempts[i + 1]
        log.warning(
            "VAE %s ran out of memory on %s %s; retrying with %d px tiles (overlap %d px).",
            what, device, "untiled" if opts is None else f"with {opts.tile_size} px tiles",
            nxt.tile_size, nxt.overlap,
        )  # fmt: skip
        empty_cache(device)
    raise AssertionError("unreachable")
