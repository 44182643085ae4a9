"""A picture of a camera trajectory: top view (x right, z forward) and side view (z forward, up).

Camera centres are drawn as a path coloured from blue (first frame) to red (last), and a few
cameras as small frusta (viewing direction and horizontal field of view), so a preset or a
pose file can be checked before spending a sampling run on it.
"""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw

from .camera import CameraTrajectory

BACKGROUND = (250, 250, 250)
GRID = (215, 215, 215)
TEXT = (40, 40, 40)
FRUSTA = 8  # cameras drawn as frusta along the path


def _colour(i: int, n: int) -> tuple[int, int, int]:
    a = i / max(n - 1, 1)
    return int(40 + 200 * a), 60, int(240 - 200 * a)


def _panel_points(c2w: torch.Tensor, axes: tuple[int, int], flip: tuple[float, float], lateral: int) -> torch.Tensor:
    """Camera centres and frustum corners in one view's 2-D coordinates: [F, 3 (centre, left, right), 2].

    ``lateral``: the camera axis spanning the frustum in this view (0 = its x for the top view, 1 = its y).
    """
    centre = c2w[:, :3, 3]
    forward, right = c2w[:, :3, 2], c2w[:, :3, lateral]
    size = 0.25 * max(float((centre.max(0).values - centre.min(0).values).max()), 1.0)
    left_tip = centre + size * (forward - 0.6 * right)
    right_tip = centre + size * (forward + 0.6 * right)
    pts = torch.stack([centre, left_tip, right_tip], dim=1)[..., list(axes)]
    return pts * torch.tensor(flip, dtype=pts.dtype)


def _to_pixels(pts: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """Fit 2-D points into box (x0, y0, x1, y1) with a margin, same scale on both axes, y up."""
    x0, y0, x1, y1 = box
    lo, hi = pts.reshape(-1, 2).min(0).values, pts.reshape(-1, 2).max(0).values
    span = float((hi - lo).max()) or 1.0
    scale = 0.8 * min(x1 - x0, y1 - y0) / span
    mid = (lo + hi) / 2
    px = (pts[..., 0] - mid[0]) * scale + (x0 + x1) / 2
    py = (y0 + y1) / 2 - (pts[..., 1] - mid[1]) * scale
    return torch.stack([px, py], dim=-1)


def _draw_panel(draw: ImageDraw.ImageDraw, pts: torch.Tensor, box: tuple[int, int, int, int], title: str) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=GRID)
    draw.text((x0 + 6, y0 + 4), title, fill=TEXT)
    px = _to_pixels(pts, box).tolist()
    n = len(px)
    for i in range(1, n):
        draw.line([tuple(px[i - 1][0]), tuple(px[i][0])], fill=_colour(i, n), width=2)
    for i in sorted({round(j * (n - 1) / max(FRUSTA - 1, 1)) for j in range(FRUSTA)}):
        centre, left, right = (tuple(p) for p in px[i])
        draw.polygon([centre, left, right], outline=_colour(i, n))
        draw.ellipse([centre[0] - 3, centre[1] - 3, centre[0] + 3, centre[1] + 3], fill=_colour(i, n))


def render_trajectory(trajectory: CameraTrajectory, width: int = 512, height: int = 256) -> torch.Tensor:
    """IMAGE [1, height, width, 3] float 0..1: top view (left) and side view (right) of the cameras."""
    c2w = trajectory.relative().c2w
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    half = width // 2
    top = _panel_points(c2w, (0, 2), (1.0, 1.0), lateral=0)  # x right, z forward (up on the page)
    side = _panel_points(c2w, (2, 1), (1.0, -1.0), lateral=1)  # z forward (right), -y = up
    _draw_panel(draw, top, (2, 2, half - 2, height - 3), "top: x right, z forward")
    _draw_panel(draw, side, (half + 2, 2, width - 3, height - 3), "side: z forward, y up")
    draw.text((6, height - 16), f"{trajectory.frames} frames, blue = first, red = last", fill=TEXT)
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(height, width, 3)
    return (pixels.float() / 255.0)[None]
