"""Classifier-free guidance and the per-step DiT inputs (spec 7.1).

v = v_uncond + g·(v_cond − v_uncond). The cond and uncond branches run as one batched
forward [2B] when ``batch_cfg`` (falling back to two forwards, cond first, if the batch
does not fit in memory) and the uncond branch is skipped entirely when g == 1.

Opt-in savings (:class:`GuidanceOptions`): CFG-Zero* (Fan et al. 2025, arXiv:2503.18886) replaces
v_uncond by s*·v_uncond with the optimised scale s* = <v_cond, v_uncond> / ‖v_uncond‖² per video and can
use a zero velocity for the first steps (no DiT call); guidance can be limited to a step range (outside
it one forward, as at g = 1). Every DiT forward goes through the step's cache strategy
(:mod:`wan_core.sampling.cache`), which may reuse earlier results instead of calling the model.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import torch

from ..conditioning.types import Conditioning
from ..devices import empty_cache
from ..errors import InputError
from .cache.base import COND, UNCOND, StepCache
from .model import DiTLike

log = logging.getLogger(__name__)

# T5 text embeddings: one [L, D] tensor, a [B, L, D] batch, or a sequence of [L_i, D] tensors.
TextEmbeddings = Union[torch.Tensor, Sequence[torch.Tensor]]

_OOM_ERRORS: tuple[type[BaseException], ...] = tuple(
    e for e in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if e
)


def as_context_list(context: TextEmbeddings, batch_size: int, name: str) -> list[torch.Tensor]:
    """Text embeddings -> one [L_i, D] tensor per batch element (a single prompt is shared)."""
    if isinstance(context, torch.Tensor):
        context = [context] if context.ndim == 2 else list(context.unbind(0))
    items = list(context)
    if len(items) == 1:
        return items * batch_size
    if len(items) != batch_size:
        raise InputError(
            f"{name} has {len(items)} prompt embeddings but the batch has {batch_size} videos; "
            "give one prompt (shared) or one per video."
        )
    return items


@dataclass(frozen=True)
class GuidanceOptions:
    """Opt-in CFG savings. ``cfg_zero_star``: the optimised scale s*; ``zero_init_steps``: the first N
    steps use a zero velocity (CFG-Zero*'s zero-init; the authors' ``zero_init_steps = K`` zeroes K + 1
    steps); ``cfg_start`` / ``cfg_end``: guidance only for steps k with k/steps in [cfg_start, cfg_end)."""

    cfg_zero_star: bool = False
    zero_init_steps: int = 0
    cfg_start: float = 0.0
    cfg_end: float = 1.0

    def __post_init__(self) -> None:
        if int(self.zero_init_steps) < 0:
            raise InputError(f"zero_init_steps must be >= 0, got {self.zero_init_steps}.")
        if not 0.0 <= float(self.cfg_start) <= float(self.cfg_end) <= 1.0:
            raise InputError(
                f"cfg_start / cfg_end must satisfy 0 <= start <= end <= 1, got {self.cfg_start} / {self.cfg_end}."
            )

    def scale_at(self, step: int, steps: int, cfg: float) -> float:
        """The guidance scale of step ``step`` of ``steps``: ``cfg`` inside the range, else 1."""
        return cfg if self.cfg_start <= step / max(steps, 1) < self.cfg_end else 1.0

    def zeroed(self, step: int) -> bool:
        return step < int(self.zero_init_steps)


NO_GUIDANCE_OPTIONS = GuidanceOptions()


@dataclass
class StepInputs:
    """What one DiT call needs besides x: t [B] or per-token [B, S], contexts and conditioning;
    the step index of ``steps`` and the step's cache strategy."""

    t: torch.Tensor
    positive: list[torch.Tensor]
    negative: list[torch.Tensor] | None
    extras: dict = field(default_factory=dict)
    step: int = 0
    steps: int = 1
    cache: StepCache = field(default_factory=StepCache)


def expand_batch(tensor: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor | None:
    """A batch-1 conditioning tensor [1, ...] -> [n, ...] on ``device`` (a view, no copy)."""
    if tensor is None:
        return None
    tensor = tensor.to(device)
    if tensor.shape[0] == n:
        return tensor
    if tensor.shape[0] != 1:
        raise InputError(
            f"Conditioning tensor has batch {tensor.shape[0]}; expected 1 (shared) or {n}: "
            "build the conditioning for one video; the sampler repeats it for the batch."
        )
    return tensor.expand(n, *tensor.shape[1:])


def conditioning_extras(cond: Conditioning, progress: float, n: int, device: torch.device) -> dict:
    """y / clip_fea / camera / active VACE hints for a forward of batch n at sampling progress 0..1."""
    extras: dict = {}
    if cond.y is not None:
        extras["y"] = expand_batch(cond.y, n, device)
    if cond.clip_fea is not None:
        extras["clip_fea"] = expand_batch(cond.clip_fea, n, device)
    if cond.camera is not None:
        extras["camera"] = expand_batch(cond.camera, n, device)
    hints = [h for h in cond.vace if h.active(progress)]
    if hints:
        extras["vace_context"] = [expand_batch(h.context, n, device) for h in hints]
        extras["vace_scale"] = [float(h.strength) for h in hints]
    return extras


def _repeat_extras(extras: dict, times: int) -> dict:
    """Extras of batch B -> batch times·B (cond and uncond share y, CLIP and VACE, as officially)."""
    out = {}
    for key, value in extras.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.repeat(times, *([1] * (value.ndim - 1)))
        elif key == "vace_context":
            out[key] = [v.repeat(times, *([1] * (v.ndim - 1))) for v in value]
        else:
            out[key] = value
    return out


def optimized_scale(v_cond: torch.Tensor, v_uncond: torch.Tensor) -> torch.Tensor:
    """CFG-Zero*'s s* = <v_cond, v_uncond> / (‖v_uncond‖² + 1e-8) per video -> [B, 1, 1, 1, 1]."""
    c, u = v_cond.reshape(v_cond.shape[0], -1), v_uncond.reshape(v_uncond.shape[0], -1)
    scale = (c * u).sum(dim=1, keepdim=True) / ((u * u).sum(dim=1, keepdim=True) + 1e-8)
    return scale.reshape([v_cond.shape[0]] + [1] * (v_cond.ndim - 1))


class Guidance:
    """Calls a DiT with or without CFG; remembers when the batched form ran out of memory."""

    def __init__(self, batch_cfg: bool, options: GuidanceOptions | None = None) -> None:
        self.batch_cfg = batch_cfg
        self.options = options or NO_GUIDANCE_OPTIONS

    def velocity(self, model: DiTLike, x: torch.Tensor, inputs: StepInputs, cfg: float) -> torch.Tensor:
        """Guided velocity [B, C, T, h, w] fp32 for the latent x [B, C, T, h, w]."""
        if self.options.zeroed(inputs.step):
            inputs.cache.zero()
            return torch.zeros_like(x, dtype=torch.float32)
        cfg = self.options.scale_at(inputs.step, inputs.steps, cfg)
        inputs.cache.start((COND,) if cfg == 1.0 else (COND, UNCOND), x)
        if cfg == 1.0:
            return self._forward(model, x, inputs.t, inputs.positive, inputs.extras, inputs.cache, (COND,))
        if inputs.negative is None:
            raise InputError(
                f"cfg is {cfg} but no negative prompt embedding was given; encode one "
                "(wan_core.configs.default_negative_prompt) or set cfg to 1."
            )
        if self.batch_cfg:
            try:
                return self._batched(model, x, inputs, cfg)
            except _OOM_ERRORS:
                log.warning(
                    "Batched cond+uncond forward ran out of memory; running the branches one after the "
                    "other for the rest of this run."
                )
                self.batch_cfg = False
            empty_cache(x.device)  # outside the except block, once the failed forward's tensors are gone
        v_cond = self._forward(model, x, inputs.t, inputs.positive, inputs.extras, inputs.cache, (COND,))
        v_uncond = self._forward(model, x, inputs.t, inputs.negative, inputs.extras, inputs.cache, (UNCOND,))
        return self._combine(v_cond, v_uncond, cfg)

    def _batched(self, model: DiTLike, x: torch.Tensor, inputs: StepInputs, cfg: float) -> torch.Tensor:
        assert inputs.negative is not None  # velocity() checked it
        xx = torch.cat([x, x])
        tt = torch.cat([inputs.t, inputs.t])
        context, extras = inputs.positive + inputs.negative, _repeat_extras(inputs.extras, 2)
        v = self._forward(model, xx, tt, context, extras, inputs.cache, (COND, UNCOND))
        v_cond, v_uncond = v.chunk(2)
        return self._combine(v_cond, v_uncond, cfg)

    def _combine(self, v_cond: torch.Tensor, v_uncond: torch.Tensor, cfg: float) -> torch.Tensor:
        if self.options.cfg_zero_star:
            v_uncond = optimized_scale(v_cond, v_uncond) * v_uncond
        return v_uncond + cfg * (v_cond - v_uncond)

    @staticmethod
    def _forward(
        model: DiTLike,
        x: torch.Tensor,
        t: torch.Tensor,
        context: list[torch.Tensor] | None,
        extras: dict,
        cache: StepCache,
        branches: tuple[str, ...],
    ) -> torch.Tensor:
        assert context is not None  # velocity() checked the negative prompt
        # a partial, not a closure: a closure's cells would outlive an exception in its traceback
        return cache.forward(branches, x, functools.partial(_call_model, model, x, t, context, extras))


def _call_model(
    model: DiTLike, x: torch.Tensor, t: torch.Tensor, context: list[torch.Tensor], extras: dict, hook: object
) -> torch.Tensor:
    """One DiT forward, fp32 output; ``hook`` (a step cache's block hook) goes in as ``block_cache``."""
    return model(x, t, context, **(extras if hook is None else {**extras, "block_cache": hook})).float()
