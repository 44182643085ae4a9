"""Shared pieces of the flow-matching solvers: σ bookkeeping, log-SNR λ, data prediction.

With α = 1 − σ the flow latent is x = α·x0 + σ·ε; λ = log α − log σ is the log signal-to-noise
ratio the multistep formulas work in. Coefficients are computed in float64 from the fp32 σ
array; the latent arithmetic stays in the latent's dtype (fp32).
"""

from __future__ import annotations

import math

import torch

# UniPC cannot start at σ = 1 (λ = −∞ makes its ratios undefined); like diffusers'
# flow UniPC we nudge such a σ down by this amount.
SIGMA_ONE_EPS = 1e-6


def log_snr(sigma: float) -> float:
    """λ(σ) = log(1 − σ) − log σ, with the limits −∞ at σ = 1 and +∞ at σ = 0."""
    if sigma <= 0.0:
        return math.inf
    if sigma >= 1.0:
        return -math.inf
    return math.log1p(-sigma) - math.log(sigma)


class FlowSolver:
    """Base class: walks a σ array [N+1] one step per call of :meth:`step`.

    ``step(x, v)`` takes the latent at σ_k and the (guided) velocity the model predicted there
    and returns the latent at σ_{k+1}. Multistep solvers keep their history in the instance, so
    one instance serves one run (both Wan2.2 experts share it, as in the official code).
    """

    def __init__(self, sigmas: torch.Tensor) -> None:
        self.sigmas = [float(s) for s in sigmas.detach().to("cpu", torch.float32).tolist()]
        self.index = 0

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    def sigma(self, k: int) -> float:
        return self.sigmas[k]

    def data_prediction(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """x0 = x − σ_k·v at the current step."""
        return x - self.sigmas[self.index] * v

    def step(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def release(self) -> None:
        """Drop cached tensors (after an interrupt or error)."""
