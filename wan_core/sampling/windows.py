"""Context windows: sample videos longer than the DiT's trained length, one window at a time.

At every step the latent's frames are split into overlapping windows of ``length`` latent
frames; the guided DiT runs on each window (x, per-token t and every time-aligned
conditioning sliced to the window's frames) and the window velocities are blended with
per-frame weights that sum to 1. The sampling loop calls :class:`ContextWindowing` instead
of the guidance directly; everything else (solver, experts, locks, previews) is unchanged.

Schedules over n frames, window length m, overlap o, stride d = m - o (step k of the run):

* ``static``: starts 0, d, 2d, ... below n - m, then n - m (the last window is moved back).
* ``uniform``: like static but every start except 0 and n - m shifts by ``floor(q_k * d)``,
  q_k the base-2 van der Corput number of k (0, 1/2, 1/4, 3/4, ...), so seams move between steps.
* ``looped``: starts ``floor(q_k * d) + j * d`` for j < ceil(n / d); frames wrap modulo n, so the
  last frames are denoised together with the first (seamless loops).
* ``batched``: disjoint windows [0, m), [m, 2m), ... (the last may be shorter); overlap unused.

Prefix frames join every window: VACE reference frames (they are trimmed afterwards) and, with
``image="every"``, the first video frame of an image-conditioned run (I2V/Fun/camera ``y``, or the
TI2V frame lock), so every window sees the start image. RoPE positions are either the frames'
real indices (a looped window keeps counting past the end) or 0..len-1 per window ("reset").
Self-attention RoPE is relative, so the two only differ where a window's frames are not
consecutive: after prefix frames.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from ..conditioning.types import Conditioning
from ..errors import InputError
from .guidance import StepInputs

log = logging.getLogger(__name__)

SCHEDULES = ("uniform", "static", "looped", "batched")
BLENDS = ("linear", "pyramid")
POSITIONS = ("real", "reset")
IMAGE_MODES = ("first", "every")


@dataclass(frozen=True)
class ContextWindows:
    """How to split the latent into windows (all counts in LATENT frames; 21 = 81 video frames).

    ``length``: frames the DiT sees at once (prefix frames included); ``overlap``: frames shared
    by neighbouring windows; ``schedule``, ``blend``, ``positions``, ``image``: see the module
    docstring; ``freenoise``: start every window from a shuffle of the previous window's noise.
    """

    length: int = 21
    overlap: int = 6
    schedule: str = "uniform"
    blend: str = "linear"
    positions: str = "real"
    image: str = "first"
    freenoise: bool = False

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("schedule", self.schedule, SCHEDULES),
            ("blend", self.blend, BLENDS),
            ("positions", self.positions, POSITIONS),
            ("image", self.image, IMAGE_MODES),
        ):
            if value not in allowed:
                raise InputError(f"Unknown context-window {name} {value!r}; use one of {', '.join(allowed)}.")
        if int(self.length) < 1:
            raise InputError(f"context length must be at least 1 latent frame, got {self.length}.")
        if not 0 <= int(self.overlap) < int(self.length):
            raise InputError(
                f"context overlap must lie in [0, length) = [0, {self.length}), got {self.overlap}: "
                "use a smaller overlap or a longer window."
            )


@dataclass(frozen=True)
class Window:
    """One DiT call: latent frame indices (prefix first), their RoPE positions, blend weights [len] fp32."""

    frames: tuple[int, ...]
    positions: tuple[int, ...]
    weights: torch.Tensor


def van_der_corput(k: int) -> float:
    """Base-2 radical inverse of k: 0, 1/2, 1/4, 3/4, 1/8, 5/8, ... (spreads window shifts over steps)."""
    out, scale = 0.0, 0.5
    while k:
        out += scale * (k & 1)
        k >>= 1
        scale /= 2
    return out


def window_starts(n: int, m: int, o: int, schedule: str, step: int) -> list[int]:
    """First frame of every window of ``schedule`` (see the module docstring) for n frames."""
    d = m - o
    if schedule == "batched":
        return list(range(0, n, m))
    if n <= m:
        return [0]
    shift = int(van_der_corput(step) * d) if schedule in ("uniform", "looped") else 0
    if schedule == "looped":
        return [shift + j * d for j in range(math.ceil(n / d))]
    inner = range(shift, n - m, d) if schedule == "uniform" else range(0, n - m, d)
    return sorted({0, n - m, *(s for s in inner if s > 0)})


def window_frames(n: int, m: int, o: int, schedule: str, step: int) -> list[list[int]]:
    """Frame indices (0..n-1) of every window; looped windows wrap modulo n (unwrap with the start)."""
    if n <= m and schedule != "batched":
        return [list(range(n))]
    return [
        [(s + i) % n for i in range(min(m, n - s) if schedule == "batched" else m)]
        for s in window_starts(n, m, o, schedule, step)
    ]


def _raw_weights(size: int, overlap: int, blend: str, left: bool, right: bool) -> torch.Tensor:
    """Unnormalised weights [size]: a pyramid, or linear ramps over ``overlap`` frames at open sides."""
    p = torch.arange(size, dtype=torch.float64)
    if blend == "pyramid":
        return torch.minimum(p + 1, size - p)
    ramp = torch.ones(size, dtype=torch.float64)
    if left:
        ramp = torch.minimum(ramp, (p + 1) / (overlap + 1))
    if right:
        ramp = torch.minimum(ramp, (size - p) / (overlap + 1))
    return ramp


def blend_weights(
    windows: Sequence[Sequence[int]], n: int, overlap: int, blend: str, looped: bool
) -> list[torch.Tensor]:
    """Per-window weights [len] fp32, normalised so that every frame's weights sum to exactly 1."""
    raw = []
    for frames in windows:
        left = looped or frames[0] != 0
        right = looped or frames[-1] != n - 1
        raw.append(_raw_weights(len(frames), overlap, blend, left and len(windows) > 1, right and len(windows) > 1))
    total = torch.zeros(n, dtype=torch.float64)
    for frames, w in zip(windows, raw):
        total[list(frames)] += w
    if bool((total <= 0).any()):
        missing = torch.nonzero(total <= 0).flatten().tolist()
        raise InputError(f"Context windows leave latent frames {missing[:8]} uncovered; use a larger overlap/length.")
    return [(w / total[list(frames)]).float() for frames, w in zip(windows, raw)]


def prefix_frames(options: ContextWindows, cond: Conditioning) -> int:
    """Leading latent frames that join every window: VACE references (+ the image frame under "every")."""
    prefix = int(cond.trim_latent_frames)
    if options.image == "every" and (cond.y is not None or cond.frame_lock is not None):
        prefix += 1
    return prefix


def _body_options(options: ContextWindows, prefix: int) -> tuple[int, int]:
    """Window length and overlap over the non-prefix frames."""
    m = int(options.length) - prefix
    if m < 1:
        raise InputError(
            f"context length {options.length} leaves no room beside {prefix} prefix frame(s) (VACE references / "
            "the start image under image='every'): use a longer context length."
        )
    return m, min(int(options.overlap), m - 1)


def plan_windows(options: ContextWindows, num_frames: int, prefix: int, step: int) -> list[Window]:
    """The windows of sampling step ``step`` for a latent of ``num_frames`` frames."""
    m, o = _body_options(options, prefix)
    n = num_frames - prefix
    if n <= m:
        everything = tuple(range(num_frames))
        return [Window(everything, everything, torch.ones(num_frames))]
    starts = window_starts(n, m, o, options.schedule, step)
    bodies = window_frames(n, m, o, options.schedule, step)
    weights = blend_weights(bodies, n, o, options.blend, options.schedule == "looped")
    head = tuple(range(prefix))
    plan = []
    for start, body, w in zip(starts, bodies, weights):
        frames = head + tuple(prefix + f for f in body)
        if options.positions == "reset":
            positions = tuple(range(len(frames)))
        else:
            positions = head + tuple(prefix + start + i for i in range(len(body)))
        shared = torch.full((prefix,), 1.0 / len(bodies))
        plan.append(Window(frames, positions, torch.cat([shared, w])))
    return plan


def _slice_value(value, frames: list[int], num_frames: int):
    """Time-aligned conditioning ([B, C, T, ...] tensors, or lists of them) restricted to ``frames``."""
    if isinstance(value, torch.Tensor) and value.ndim == 5 and value.shape[2] == num_frames:
        return value[:, :, frames]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, torch.Tensor) for v in value):
        return [_slice_value(v, frames, num_frames) for v in value]
    return value


def window_inputs(inputs: StepInputs, window: Window, num_frames: int) -> StepInputs:
    """StepInputs of one window: per-token t and every 5-D conditioning with T frames sliced."""
    frames = list(window.frames)
    t = inputs.t
    if t.ndim == 2:  # per-token timesteps [B, T * tokens_per_frame]
        t = t.reshape(t.shape[0], num_frames, -1)[:, frames].reshape(t.shape[0], -1)
    extras = {k: _slice_value(v, frames, num_frames) for k, v in inputs.extras.items()}
    if window.positions != tuple(range(len(frames))):
        extras["frame_positions"] = window.positions
    return replace(inputs, t=t, extras=extras)  # keeps the step index, step count and cache


Predict = Callable[[torch.Tensor, StepInputs], torch.Tensor]


class ContextWindowing:
    """The strategy the sampling loop calls for a step's velocity when context windows are on."""

    def __init__(self, options: ContextWindows, cond: Conditioning) -> None:
        self.options = options
        self.num_frames = int(cond.latent_shape[1])
        self.prefix = prefix_frames(options, cond)
        _body_options(options, self.prefix)  # fail before the first step
        first = plan_windows(options, self.num_frames, self.prefix, 0)
        log.info("Context windows: %d latent frames in %d windows of %d.", self.num_frames, len(first), options.length)

    def velocity(
        self, predict: Predict, x: torch.Tensor, inputs: StepInputs, step: int, check: Callable[[], None]
    ) -> torch.Tensor:
        """Blended velocity [B, C, T, h, w] fp32; ``predict(x_window, inputs_window)`` is the guided DiT."""
        plan = plan_windows(self.options, self.num_frames, self.prefix, step)
        if len(plan) == 1 and plan[0].frames == tuple(range(self.num_frames)):
            return predict(x, inputs)  # one window covering everything: exactly the plain call
        out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        for window in plan:
            check()
            frames = list(window.frames)
            v = predict(x[:, :, frames], window_inputs(inputs, window, self.num_frames))
            out[:, :, frames] += v.float() * window.weights.to(out.device).view(1, 1, -1, 1, 1)
        return out


def freenoise(noise: torch.Tensor, options: ContextWindows | None, cond: Conditioning, seed: int) -> torch.Tensor:
    """FreeNoise rescheduling of the initial noise [B, C, T, h, w] (unchanged when off or one window).

    Frames [s, s + d) for s = m, m + d, ... take a seeded random permutation of frames
    [s - m, s - m + d), so every window starts from a shuffle of earlier noise (long-range consistency).
    """
    if options is None or not options.freenoise:
        return noise
    prefix = prefix_frames(options, cond)
    m, o = _body_options(options, prefix)
    n = noise.shape[2] - prefix
    d = m if options.schedule == "batched" else m - o
    if n <= m:
        return noise
    gen = torch.Generator().manual_seed(int(seed) % (1 << 63))
    out = noise.clone()
    for start in range(m, n, d):
        size = min(d, n - start)
        source = (start - m + torch.randperm(size, generator=gen) + prefix).tolist()
        out[:, :, prefix + start : prefix + start + size] = out[:, :, source]
    return out
