"""Flow DPM-Solver++ 2M (midpoint), as the official FlowDPMSolverMultistepScheduler (spec 7.4).

With data predictions m and h = λ_t − λ_s:
  1st order: x_t = (σ_t/σ_s)·x − α_t·(e^{−h} − 1)·m0
  2nd order: r0 = h_prev/h, D1 = (m0 − m_prev)/r0,
             x_t = (σ_t/σ_s)·x − α_t·(e^{−h} − 1)·(m0 + ½·D1)
The first step and the final step are first order (final_sigmas_type 'zero').
"""

from __future__ import annotations

import math

import torch

from .base import FlowSolver, log_snr


class DPMPP2MSolver(FlowSolver):
    def __init__(self, sigmas: torch.Tensor) -> None:
        super().__init__(sigmas)
        self.previous: torch.Tensor | None = None

    def step(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        k = self.index
        m0 = self.data_prediction(x, v)
        s, t = self.sigmas[k], self.sigmas[k + 1]
        h = log_snr(t) - log_snr(s)
        # α_t·(e^{−h} − 1); e^{−h} is 0 when h = +∞ (σ_s = 1 or σ_t = 0)
        coeff = (1.0 - t) * (math.exp(-h) - 1.0)
        out = (t / s) * x - coeff * m0
        previous = self.previous
        if previous is not None and k != self.steps - 1:  # second order, except on the first and last steps
            h_prev = log_snr(s) - log_snr(self.sigmas[k - 1])
            inv_r0 = h / h_prev  # 0 when the previous σ was 1 (h_prev = +∞)
            out = out - 0.5 * coeff * inv_r0 * (m0 - previous)
        self.previous = m0
        self.index += 1
        return out.to(x.dtype)

    def release(self) -> None:
        self.previous = None
