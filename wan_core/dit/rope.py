"""3-D rotary position embedding (WAN_SPEC 2.5), cached per grid, device and dtype.

Head dim d = 128 is split into complex pairs 22 / 21 / 21 (real dims 44 / 42 / 42) for
(frame, row, column). Each axis has its own frequency table over its own size A:
``w_j = 10000^(-2j/A)``. Angles are computed in float64 once per grid and stored as
unit complex numbers in complex64 (applied to fp32 q/k) or complex128.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

from ..errors import InputError

THETA = 10000.0


def axis_split(head_dim: int) -> tuple[int, int, int]:
    """Real dims per axis (t, h, w): ``d - 4(d//6)``, ``2(d//6)``, ``2(d//6)``."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def axis_angles(positions: int | Sequence[int], axis_dim: int, offset: int = 0) -> torch.Tensor:
    """Angles ``pos * w_j`` [P, axis_dim/2] in float64.

    ``positions``: a count P (pos = offset .. offset + P - 1) or the P positions themselves.
    """
    j = torch.arange(0, axis_dim, 2, dtype=torch.float64)
    omega = 1.0 / (THETA ** (j / axis_dim))
    if isinstance(positions, int):
        pos = torch.arange(offset, offset + positions, dtype=torch.float64)
    else:
        pos = torch.tensor([float(p) for p in positions], dtype=torch.float64) + offset
    return torch.outer(pos, omega)


def grid_angles(
    grid: tuple[int, int, int], head_dim: int, frame_offset: int = 0, frame_positions: Sequence[int] | None = None
) -> torch.Tensor:
    """Angles [f*gh*gw, head_dim/2] float64 for tokens in row-major (frame, row, col) order.

    ``frame_positions``: the temporal RoPE position of each of the f frames (context windows
    give a window its real positions, or any other); default ``frame_offset .. frame_offset + f - 1``.
    """
    f, gh, gw = grid
    dt, dh, dw = axis_split(head_dim)
    if frame_positions is not None and len(frame_positions) != f:
        raise InputError(f"{len(frame_positions)} frame positions given for a grid of {f} frames; give one per frame.")
    frames = f if frame_positions is None else frame_positions
    at = axis_angles(frames, dt, frame_offset)[:, None, None, :].expand(f, gh, gw, -1)
    ah = axis_angles(gh, dh)[None, :, None, :].expand(f, gh, gw, -1)
    aw = axis_angles(gw, dw)[None, None, :, :].expand(f, gh, gw, -1)
    return torch.cat([at, ah, aw], dim=-1).reshape(f * gh * gw, head_dim // 2)


class RopeCache:
    """Complex RoPE factors [S, 1, d/2] per (grid, frame offset, device, dtype); LRU of a few entries."""

    def __init__(self, head_dim: int, max_entries: int = 16) -> None:
        self.head_dim = head_dim
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(
        self,
        grid: tuple[int, int, int],
        device: torch.device,
        dtype: torch.dtype = torch.complex64,
        frame_offset: int = 0,
        frame_positions: Sequence[int] | None = None,
    ) -> torch.Tensor:
        positions = None if frame_positions is None else tuple(int(p) for p in frame_positions)
        key = (tuple(grid), frame_offset, positions, str(device), dtype)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        angles = grid_angles(grid, self.head_dim, frame_offset, positions)
        factors = torch.polar(torch.ones_like(angles), angles).to(dtype)[:, None, :].to(device)
        self._cache[key] = factors
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return factors

    def clear(self) -> None:
        self._cache.clear()


def apply_rope(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs (2j real, 2j+1 imaginary) of x [B, S, H, d] by factors [S, 1, d/2].

    x must be float32 (complex64 factors) or float64 (complex128); returns x's dtype.
    """
    pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * factors).flatten(-2)
