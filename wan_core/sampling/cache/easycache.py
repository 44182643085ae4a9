"""EasyCache: reuse the DiT's last transformation (output − input) while the estimated change is small.

Per step t (x_t the latent, o_t the positive branch's output; ‖·‖ the mean absolute value):

* the transformation rate k = ‖o_τ − o_τ'‖ / ‖x_τ − x_τ'‖ between the last two computed steps τ' < τ;
* the estimated relative output change ε_t = k · ‖x_t − x_ref‖ / ‖o_τ‖ is accumulated, E += ε_t;
* while E < reuse_threshold every branch returns x_t + (o_τ − x_τ) of its own branch; else E = 0
  and the DiT runs.

Only steps with σ <= σ(start_percent) may reuse; from σ <= σ(end_percent) on the DiT runs and the
statistics are left as they are. "comfyui" mode measures on inputs and outputs subsampled 8× in h and w,
with x_ref = x_τ and ‖o_τ‖ over the forward that holds the positive branch (ComfyUI's EasyCache node);
"paper" mode uses full resolution, x_ref = x_(t−1) and the positive output only (the authors' Wan code).
"""

from __future__ import annotations

import math

import torch

from ..schedules import shift_sigmas
from .base import COND, MethodState, ModelCall, StepCache, branch_slices
from .report import StepRecord
from .settings import EasyCacheSettings


def percent_to_sigma(percent: float, shift: float) -> float:
    """ComfyUI's flow-model rule: σ = shift(1 − percent), 1 at 0 %, 0 at 100 %, as an fp32 value."""
    if percent <= 0.0:
        return 1.0
    if percent >= 1.0:
        return 0.0
    return float(torch.tensor(shift_sigmas(1.0 - percent, shift), dtype=torch.float32))


def _change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).flatten().abs().mean())


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.inf


class EasyCacheState(MethodState):
    """Statistics of the positive branch and one cached transformation per branch, for one expert."""

    def __init__(self, settings: EasyCacheSettings, sigmas: list[float], shift: float) -> None:
        super().__init__()
        self.settings = settings
        self.paper = settings.mode == "paper"
        self.sigmas = sigmas
        self.start_sigma = percent_to_sigma(settings.start_percent, shift)
        self.end_sigma = percent_to_sigma(settings.end_percent, shift)
        self.factor = 1 if self.paper else 8
        self.reset()

    def reset(self) -> None:
        self.started = False  # comfyui: statistics are kept from the first step inside the range on
        self.x_step: torch.Tensor | None = None  # paper: x of the previous step
        self.x_last: torch.Tensor | None = None  # x of the last computed step
        self.out_last: torch.Tensor | None = None  # positive output of the last computed step
        self.norm: float | None = None  # mean |output| of the last computed step
        self.rate: float | None = None  # k
        self.accumulated = 0.0
        self.diffs: dict[str, torch.Tensor] = {}

    def sub(self, t: torch.Tensor) -> torch.Tensor:
        return t[..., :: self.factor, :: self.factor] if self.factor > 1 else t

    def decide(self, x: torch.Tensor, sigma: float) -> bool:
        """Reuse at this step? Updates the accumulated estimate (x: the subsampled latent)."""
        active = sigma <= self.start_sigma
        self.started = self.started or active
        reference = self.x_step if self.paper else self.x_last
        if self.paper:
            self.x_step = x
        if not active or reference is None or self.norm is None or self.rate is None:
            return False
        self.accumulated += self.rate * _change(x, reference) / self.norm if self.norm > 0 else math.inf
        if self.accumulated < self.settings.reuse_threshold:
            return True
        self.accumulated = 0.0
        return False

    def computed(self, x: torch.Tensor, positive: torch.Tensor, whole: torch.Tensor) -> None:
        """Statistics after a computed step: k, then x, output and norm of this step."""
        out = self.sub(positive)
        if self.out_last is not None and self.x_last is not None:
            self.rate = _ratio(_change(out, self.out_last), _change(x, self.x_last))
        self.x_last, self.out_last = x, out
        self.norm = float((positive if self.paper else whole).flatten().abs().mean())

    def step(self, k: int, record: StepRecord) -> StepCache:
        return EasyCacheStep(self, k, record)


class EasyCacheStep(StepCache):
    def __init__(self, state: EasyCacheState, k: int, record: StepRecord) -> None:
        super().__init__(record)
        self.state, self.k = state, k
        self.skip = False
        self.x: torch.Tensor | None = None  # subsampled latent while statistics are kept

    def start(self, branches: tuple[str, ...], x: torch.Tensor) -> None:
        super().start(branches, x)
        s = self.state
        sigma = s.sigmas[self.k]
        if not sigma > s.end_sigma:
            return  # past the end: run, leave everything as it is
        s.check_layout(branches, x, self.k)
        x_sub = s.sub(x)
        self.skip = s.decide(x_sub, sigma) and s.settings.reuse_threshold > 0
        if s.started or s.paper:
            self.x = x_sub

    def forward(self, branches: tuple[str, ...], x: torch.Tensor, call: ModelCall) -> torch.Tensor:
        s = self.state
        if self.skip:
            return x + torch.cat([s.diffs[b] for b in branches])
        out = call(None)
        self.record.ran += len(branches)
        if not s.sigmas[self.k] > s.end_sigma:
            return out
        parts = branch_slices(branches, out.shape[0])
        for b, part in parts:
            s.diffs[b] = out[part] - x[part]
        if COND in branches and self.x is not None:
            s.computed(self.x, out[parts[0][1]], out)
        return out
