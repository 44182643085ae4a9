"""Solver factory: name -> a fresh solver walking a σ array."""

from __future__ import annotations

import torch

from ..errors import InputError
from .base import FlowSolver
from .dpmpp import DPMPP2MSolver
from .euler import EulerSolver
from .unipc import UniPCSolver

_SOLVERS: dict[str, type[FlowSolver]] = {"unipc": UniPCSolver, "dpm++": DPMPP2MSolver, "euler": EulerSolver}


def make_solver(name: str, sigmas: torch.Tensor) -> FlowSolver:
    """A new solver instance for one run over ``sigmas`` (fp32 [N+1])."""
    try:
        return _SOLVERS[name](sigmas)
    except KeyError:
        raise InputError(f"Unknown solver {name!r}; use one of {', '.join(_SOLVERS)}.") from None
