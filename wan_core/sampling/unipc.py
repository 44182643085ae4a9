"""Flow UniPC (bh2, order 2, predictor + corrector), as the official FlowUniPCMultistepScheduler (spec 7.3).

Data prediction m = x − σ·v; α = 1 − σ; λ = log α − log σ. One step from σ_s to σ_t, h = λ_t − λ_s:

* Corrector (UniC), at every step k > 0 with the fresh output m_t of the point just reached,
  re-does the previous update with m_t as an extra node:
  x_t = (σ_t/σ_s)·x_s − α_t·φ1·m0 − α_t·B·(Σ ρ_i·D_i + ρ_last·(m_t − m0)), where the model
  output itself was computed on the uncorrected x_t.
* Predictor (UniP): x_t = (σ_t/σ_s)·x − α_t·φ1·m0 − α_t·B·½·D1 (the D1 term only at order 2),
  with φ1 = B = expm1(−h) (bh2), D1 = (m_prev − m0)/r, r = (λ_prev − λ_s)/h.

The order is min(2, k + 1, N − k): first order to warm up and on the final step.
"""

from __future__ import annotations

import math

import torch

from .base import SIGMA_ONE_EPS, FlowSolver, log_snr


class _Update:
    """Scalar coefficients of one UniPC update from σ_s to σ_t (float64)."""

    def __init__(self, sigma_s: float, sigma_t: float) -> None:
        self.sigma_ratio = sigma_t / sigma_s
        self.alpha_t = 1.0 - sigma_t
        self.lambda_s = log_snr(sigma_s)
        self.h = log_snr(sigma_t) - self.lambda_s
        hh = -self.h
        self.hh = hh
        self.phi1 = math.expm1(hh) if math.isfinite(hh) else -1.0
        self.b_h = self.phi1  # bh2

    def ratio_to(self, sigma_prev: float) -> float:
        """r = (λ_prev − λ_s)/h."""
        return (log_snr(sigma_prev) - self.lambda_s) / self.h

    def rhs(self, order: int) -> list[float]:
        """b_i = h_φ_i·i!/B for i = 1..order, h_φ_1 = φ1/hh − 1, h_φ_{i+1} = h_φ_i/hh − 1/(i+1)!."""
        values, factorial = [], 1.0
        h_phi = self.phi1 / self.hh - 1.0
        for i in range(1, order + 1):
            values.append(h_phi * factorial / self.b_h)
            factorial *= i + 1
            h_phi = h_phi / self.hh - 1.0 / factorial
        return values

    def base(self, x: torch.Tensor, m0: torch.Tensor) -> torch.Tensor:
        return self.sigma_ratio * x - (self.alpha_t * self.phi1) * m0


class UniPCSolver(FlowSolver):
    def __init__(self, sigmas: torch.Tensor) -> None:
        super().__init__(sigmas)
        self.sigmas = [min(s, 1.0 - SIGMA_ONE_EPS) for s in self.sigmas]
        self.outputs: list[torch.Tensor] = []  # data predictions, newest last (at most 2)
        self.last_sample: torch.Tensor | None = None
        self.last_order = 0

    def step(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        k = self.index
        m = self.data_prediction(x, v)
        if k > 0 and self.last_sample is not None:
            x = self._correct(m)
        self.outputs = (self.outputs + [m])[-2:]
        order = min(2, len(self.outputs), self.steps - k)
        self.last_sample = x
        self.last_order = order
        out = self._predict(x, order)
        self.index += 1
        return out.to(x.dtype)

    def _predict(self, x: torch.Tensor, order: int) -> torch.Tensor:
        k = self.index
        up = _Update(self.sigmas[k], self.sigmas[k + 1])
        m0 = self.outputs[-1]
        out = up.base(x, m0)
        if order == 2:
            r = up.ratio_to(self.sigmas[k - 1])
            d1 = (self.outputs[-2] - m0) / r
            out = out - (up.alpha_t * up.b_h * 0.5) * d1
        return out

    def _correct(self, m_t: torch.Tensor) -> torch.Tensor:
        """Corrected latent at σ_k from the previous sample x_{k−1} and the fresh output m_t."""
        k, order = self.index, self.last_order
        up = _Update(self.sigmas[k - 1], self.sigmas[k])
        m0 = self.outputs[-1]
        assert self.last_sample is not None  # set by the previous step
        out = up.base(self.last_sample, m0)
        if order == 1:
            return out - (up.alpha_t * up.b_h * 0.5) * (m_t - m0)
        r = up.ratio_to(self.sigmas[k - 2])
        b1, b2 = up.rhs(2)
        # R·ρ = b with R = [[1, 1], [r, 1]]
        rho0 = (b2 - b1) / (r - 1.0)
        rho1 = b1 - rho0
        d1 = (self.outputs[-2] - m0) / r
        return out - (up.alpha_t * up.b_h) * (rho0 * d1 + rho1 * (m_t - m0))

    def release(self) -> None:
        self.outputs = []
        self.last_sample = None
