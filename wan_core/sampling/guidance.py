"""Classifier-free guidance and the per-step DiT inputs (spec 7.1).

v = v_uncond + g·(v_cond − v_uncond). The cond and uncond branches run as one batched
forward [2B] when ``batch_cfg`` (falling back to two forwards, cond first, if the batch
does not fit in memory) and the uncond branch is skipped entirely when g == 1.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import torch

from ..conditioning.types import Conditioning
from ..devices import empty_cache
from ..errors import InputError
from .experts import DiTLike

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


@dataclass
class StepInputs:
    """What one DiT call needs besides x: t [B] or per-token [B, S], contexts and conditioning."""

    t: torch.Tensor
    positive: list[torch.Tensor]
    negative: list[torch.Tensor] | None
    extras: dict = field(default_factory=dict)


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


class Guidance:
    """Calls a DiT with or without CFG; remembers when the batched form ran out of memory."""

    def __init__(self, batch_cfg: bool) -> None:
        self.batch_cfg = batch_cfg

    def velocity(self, model: DiTLike, x: torch.Tensor, inputs: StepInputs, cfg: float) -> torch.Tensor:
        """Guided velocity [B, C, T, h, w] fp32 for the latent x [B, C, T, h, w]."""
        if cfg == 1.0:
            return self._forward(model, x, inputs.t, inputs.positive, inputs.extras)
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
        v_cond = self._forward(model, x, inputs.t, inputs.positive, inputs.extras)
        v_uncond = self._forward(model, x, inputs.t, inputs.negative, inputs.extras)
        return v_uncond + cfg * (v_cond - v_uncond)

    def _batched(self, model, x: torch.Tensor, inputs: StepInputs, cfg: float) -> torch.Tensor:
        xx = torch.cat([x, x])
        tt = torch.cat([inputs.t, inputs.t])
        v = self._forward(model, xx, tt, inputs.positive + inputs.negative, _repeat_extras(inputs.extras, 2))
        v_cond, v_uncond = v.chunk(2)
        return v_uncond + cfg * (v_cond - v_uncond)

    @staticmethod
    def _forward(model, x, t, context, extras) -> torch.Tensor:
        return model(x, t, context, **extras).float()
