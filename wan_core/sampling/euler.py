"""Euler for flow matching: x_{k+1} = x_k + (σ_{k+1} − σ_k)·v_k."""

from __future__ import annotations

import torch

from .base import FlowSolver


class EulerSolver(FlowSolver):
    def step(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        k = self.index
        self.index += 1
        return x + (self.sigmas[k + 1] - self.sigmas[k]) * v
