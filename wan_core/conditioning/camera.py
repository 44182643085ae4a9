"""Camera trajectories for Wan-Fun camera models: presets, CameraCtrl pose files, Plücker rays.

A trajectory holds one pinhole camera per pixel frame: intrinsics ``(fx, fy, cx, cy)`` as
fractions of the width/height of the image they were measured on (aspect ``source_aspect``)
and a camera-to-world matrix in OpenCV axes (x right, y down, z forward). Poses are made
relative to the first camera before use, as CameraCtrl and VideoX-Fun do.

Plücker embedding of pixel (u, v) (pixel centres u + 0.5): ray direction
``d = R · normalize(((u + .5 - cx) / fx, (v + .5 - cy) / fy, 1))`` and origin ``o = t`` of
``c2w = [R | t]``; the 6 channels are ``(o × d, d)``. The model takes them per latent frame:
pixel frame 0 is repeated to 4 frames, then every 4 frames become 4 x 6 = 24 channels
(channel = 4·c + k for Plücker channel c of the k-th frame), ``[1, 24, T, H, W]``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..errors import ConditioningError, InputError
from .latents import TEMPORAL_STRIDE

log = logging.getLogger(__name__)

BASE_TRANSLATION = 1.5  # scene units a translating preset moves at speed 1 (the CameraCtrl presets' unit)
BASE_ANGLE = math.pi / 3  # radians a rotating preset turns at speed 1
ORBIT_RADIUS = BASE_TRANSLATION / math.sin(BASE_ANGLE)  # an orbit at speed 1 travels sideways as far as a pan
# fx, fy, cx, cy of VideoX-Fun's sample trajectories: square pixels on a 16:9 frame (RealEstate10K-like lens).
DEFAULT_INTRINSICS = (0.532139961, 0.946026558, 0.5, 0.5)
SOURCE_ASPECT = 16 / 9
POSE_FIELDS = 19  # CameraCtrl line: frame fx fy cx cy k1 k2 + a 3x4 world-to-camera matrix

# preset -> (camera-centre direction per unit motion, rotation axis and sign)
_TRANSLATIONS = {
    "pan_left": (-1.0, 0.0, 0.0),
    "pan_right": (1.0, 0.0, 0.0),
    "pan_up": (0.0, -1.0, 0.0),
    "pan_down": (0.0, 1.0, 0.0),
    "zoom_in": (0.0, 0.0, 2.0),
    "zoom_out": (0.0, 0.0, -2.0),
}
_ROTATIONS = {
    "tilt_up": ("x", 1.0),
    "tilt_down": ("x", -1.0),
    "turn_left": ("y", -1.0),
    "turn_right": ("y", 1.0),
    "roll_clockwise": ("z", 1.0),
    "roll_anticlockwise": ("z", -1.0),
}
PRESETS = ("static", *_TRANSLATIONS, *_ROTATIONS, "orbit_left", "orbit_right")


@dataclass(frozen=True, eq=False)
class CameraTrajectory:
    """Per-frame cameras: ``intrinsics`` [F, 4] (fx, fy, cx, cy as fractions of width/height) and
    ``c2w`` [F, 4, 4] camera-to-world (OpenCV axes), both float64; ``source_aspect`` = width / height
    of the image the intrinsics were normalised by."""

    intrinsics: torch.Tensor
    c2w: torch.Tensor
    source_aspect: float = SOURCE_ASPECT

    def __post_init__(self) -> None:
        n = self.intrinsics.shape[0]
        if self.intrinsics.shape != (n, 4) or self.c2w.shape != (n, 4, 4) or n < 1:
            raise InputError(
                f"A camera trajectory needs intrinsics [F, 4] and c2w [F, 4, 4]; got {tuple(self.intrinsics.shape)} "
                f"and {tuple(self.c2w.shape)}."
            )

    @property
    def frames(self) -> int:
        return int(self.c2w.shape[0])

    def relative(self) -> CameraTrajectory:
        """Poses relative to the first camera: ``c2w_i' = inv(c2w_0) @ c2w_i`` (the first becomes identity)."""
        return replace(self, c2w=torch.linalg.inv(self.c2w[0]) @ self.c2w)

    def fit_length(self, frames: int) -> CameraTrajectory:
        """The first ``frames`` cameras; a shorter trajectory is stretched (nearest pose) to ``frames``."""
        if frames == self.frames:
            return self
        if frames < self.frames:
            index = torch.arange(frames)
        else:
            log.info("Camera trajectory has %d poses for %d frames: stretching it.", self.frames, frames)
            index = torch.round(torch.linspace(0, self.frames - 1, frames)).long()
        return replace(self, intrinsics=self.intrinsics[index], c2w=self.c2w[index])


def axis_rotation(axis: str, angle: float) -> torch.Tensor:
    """3x3 float64 rotation by ``angle`` radians about the x, y or z axis (right-handed)."""
    c, s = math.cos(angle), math.sin(angle)
    matrices = {
        "x": [[1, 0, 0], [0, c, -s], [0, s, c]],
        "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]],
        "z": [[c, -s, 0], [s, c, 0], [0, 0, 1]],
    }
    return torch.tensor(matrices[axis], dtype=torch.float64)


def _pose(rotation: torch.Tensor, centre: tuple[float, float, float]) -> torch.Tensor:
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] = rotation
    out[:3, 3] = torch.tensor(centre, dtype=torch.float64)
    return out


def _preset_pose(name: str, amount: float) -> torch.Tensor:
    """c2w of preset ``name`` after ``amount`` (0 at the first frame) units of motion."""
    if name in _TRANSLATIONS:
        step = BASE_TRANSLATION * amount
        dx, dy, dz = _TRANSLATIONS[name]
        return _pose(torch.eye(3, dtype=torch.float64), (step * dx, step * dy, step * dz))
    if name in _ROTATIONS:
        axis, sign = _ROTATIONS[name]
        return _pose(axis_rotation(axis, sign * BASE_ANGLE * amount), (0.0, 0.0, 0.0))
    if name in ("orbit_left", "orbit_right"):  # circle a point ORBIT_RADIUS ahead, always facing it
        phi = BASE_ANGLE * amount * (1.0 if name == "orbit_left" else -1.0)
        centre = (-ORBIT_RADIUS * math.sin(phi), 0.0, ORBIT_RADIUS * (1.0 - math.cos(phi)))
        return _pose(axis_rotation("y", phi), centre)
    return torch.eye(4, dtype=torch.float64)


def preset_trajectory(
    name: str,
    frames: int,
    speed: float = 1.0,
    intrinsics: tuple[float, float, float, float] = DEFAULT_INTRINSICS,
    source_aspect: float = SOURCE_ASPECT,
) -> CameraTrajectory:
    """A preset camera move over ``frames`` pixel frames; frame i has moved ``speed * i / frames`` units.

    Units: ``BASE_TRANSLATION`` scene units (zoom: twice that) or ``BASE_ANGLE`` radians; pans move the
    camera centre (CameraCtrl's naming), tilts/turns/rolls rotate it, orbits circle a point ahead.
    """
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key not in PRESETS:
        raise InputError(f"Unknown camera preset {name!r}; use one of {', '.join(PRESETS)}.")
    if frames < 1:
        raise InputError(f"A camera trajectory needs at least 1 frame, got {frames}.")
    c2w = torch.stack([_preset_pose(key, speed * i / frames) for i in range(frames)])
    k = torch.tensor(intrinsics, dtype=torch.float64).expand(frames, 4).clone()
    return CameraTrajectory(k, c2w, source_aspect)


def _pose_rows(text: str) -> list[list[float]]:
    rows = []
    for number, line in enumerate(text.splitlines()):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(p) for p in parts]
        except ValueError:
            if rows or number > 0:
                raise InputError(f"Camera pose line {number + 1} is not numbers: {line[:60]!r}.") from None
            continue  # the header line (a video URL in RealEstate10K/CameraCtrl files)
        if len(values) != POSE_FIELDS:
            raise InputError(
                f"Camera pose line {number + 1} has {len(values)} numbers; a CameraCtrl pose line has {POSE_FIELDS}: "
                "frame fx fy cx cy k1 k2 and a 3x4 world-to-camera matrix (row-major)."
            )
        rows.append(values)
    return rows


def read_pose_file(source: str | os.PathLike, source_aspect: float = SOURCE_ASPECT) -> CameraTrajectory:
    """A CameraCtrl / RealEstate10K pose file (a path, or its text) -> trajectory.

    Each line: ``frame fx fy cx cy k1 k2 r11 r12 r13 t1 r21 r22 r23 t2 r31 r32 r33 t3`` with
    normalised intrinsics and a world-to-camera matrix; an optional first line (URL) is skipped.
    """
    text = str(source)
    if "\n" not in text and Path(text).is_file():
        text = Path(text).read_text()
    rows = _pose_rows(text)
    if not rows:
        raise InputError("The camera pose file has no pose lines (frame fx fy cx cy k1 k2 + 12 matrix numbers).")
    data = torch.tensor(rows, dtype=torch.float64)
    w2c = torch.eye(4, dtype=torch.float64).repeat(len(rows), 1, 1)
    w2c[:, :3, :] = data[:, 7:].reshape(-1, 3, 4)
    return CameraTrajectory(data[:, 1:5].clone(), torch.linalg.inv(w2c), source_aspect)


def pixel_intrinsics(trajectory: CameraTrajectory, width: int, height: int) -> torch.Tensor:
    """[F, 4] (fx, fy, cx, cy) in pixels of a ``width`` x ``height`` centre crop of the source image.

    Cropping a wider source keeps its height, so fx follows the height (fx·H·aspect); cropping a
    taller one keeps its width (fy·W/aspect). CameraCtrl / VideoX-Fun convention.
    """
    fx, fy, cx, cy = trajectory.intrinsics.unbind(-1)
    if trajectory.source_aspect > width / height:
        fx_px, fy_px = fx * height * trajectory.source_aspect, fy * height
    else:
        fx_px, fy_px = fx * width, fy * width / trajectory.source_aspect
    return torch.stack([fx_px, fy_px, cx * width, cy * height], dim=-1)


def plucker_rays(trajectory: CameraTrajectory, width: int, height: int) -> torch.Tensor:
    """Plücker embedding [F, 6, height, width] fp32 = (o × d, d) per pixel (see the module docstring)."""
    k = pixel_intrinsics(trajectory, width, height)[:, :, None, None]  # [F, 4, 1, 1]
    c2w = trajectory.relative().c2w
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + 0.5, torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij"
    )
    x = (u[None] - k[:, 2]) / k[:, 0]
    y = (v[None] - k[:, 3]) / k[:, 1]
    d_cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # [F, H, W, 3]
    d_cam = d_cam / d_cam.norm(dim=-1, keepdim=True)
    d = torch.einsum("fij,fhwj->fhwi", c2w[:, :3, :3], d_cam)
    o = c2w[:, None, None, :3, 3].expand_as(d)
    return torch.cat([torch.cross(o, d, dim=-1), d], dim=-1).permute(0, 3, 1, 2).float().contiguous()


def latent_layout(rays: torch.Tensor) -> torch.Tensor:
    """Pixel-frame rays [F = 4T - 3, 6, H, W] -> the model's camera input [1, 24, T, H, W]."""
    frames, channels, h, w = rays.shape
    if (frames - 1) % TEMPORAL_STRIDE:
        raise InputError(f"Camera rays cover {frames} frames; expected 4n+1 (one per video frame).")
    padded = torch.cat([rays[:1].expand(TEMPORAL_STRIDE - 1, -1, -1, -1), rays], dim=0)  # [4T, 6, H, W]
    grouped = padded.reshape(-1, TEMPORAL_STRIDE, channels, h, w).transpose(1, 2)  # [T, 6, 4, H, W]
    return grouped.reshape(grouped.shape[0], channels * TEMPORAL_STRIDE, h, w).transpose(0, 1)[None].contiguous()


def camera_embedding(trajectory: CameraTrajectory, frames: int, width: int, height: int) -> torch.Tensor:
    """The camera input of a ``frames``-frame video: ``[1, 24, T, height, width]`` fp32."""
    if (frames - 1) % TEMPORAL_STRIDE:
        raise ConditioningError(f"Camera conditioning needs 4n+1 frames, got {frames}.")
    return latent_layout(plucker_rays(trajectory.fit_length(frames), width, height))
