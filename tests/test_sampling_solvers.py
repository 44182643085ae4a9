"""Solver parity with diffusers' schedulers fed the SAME σ array (spec 7.3, 7.4, Appendix B).

diffusers' own flow grids differ from the official ones, so both sides get our σ array; the
comparison is on every intermediate latent.
"""

from __future__ import annotations

import pytest
import torch
from conftest import rel_err
from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from wan_core.sampling import SamplerSettings, build_schedule
from wan_core.sampling.solvers import make_solver

SHAPE = (1, 4, 3, 6, 5)


def velocity_field(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A deterministic nonlinear stand-in for the DiT: depends on x and σ."""
    g = torch.Generator().manual_seed(1234)
    w = torch.randn(SHAPE[1], SHAPE[1], generator=g) * 0.4
    mixed = torch.einsum("ij,bjthw->bithw", w, x)
    return torch.tanh(mixed + 2.0 * sigma) - 0.7 * x * (1.0 - sigma) + torch.sin(3.0 * x) * sigma


def run_ours(solver: str, sigmas: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
    s = make_solver(solver, sigmas)
    out = []
    for k in range(sigmas.shape[0] - 1):
        x = s.step(x, velocity_field(x, float(s.sigma(k))))
        out.append(x)
    return out


def run_diffusers(sched, sigmas: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
    n = sigmas.shape[0] - 1
    sched.set_timesteps(n)
    sched.sigmas = sigmas.clone()
    sched.timesteps = sigmas[:-1] * 1000
    sched.set_begin_index(0)
    out = []
    for k in range(n):
        t = sched.timesteps[k]
        v = velocity_field(x, float(sched.sigmas[k]))
        x = sched.step(v, t, x, return_dict=False)[0]
        out.append(x)
    return out


def diffusers_unipc(shift: float):
    return UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=shift,
        solver_order=2,
        solver_type="bh2",
        predict_x0=True,
        lower_order_final=True,
        final_sigmas_type="zero",
    )


def diffusers_dpm(shift: float):
    return DPMSolverMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=shift,
        solver_order=2,
        algorithm_type="dpmsolver++",
        solver_type="midpoint",
        lower_order_final=True,
        final_sigmas_type="zero",
    )


def compare(ours: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    assert len(ours) == len(ref)
    worst = max(rel_err(a, b) for a, b in zip(ours, ref))
    assert worst <= 1e-5, f"worst intermediate rel err {worst:.3g}"
    return worst


@pytest.mark.parametrize("steps,shift", [(12, 5.0), (20, 12.0), (7, 3.0)])
def test_unipc_matches_diffusers(steps, shift):
    sched = build_schedule(SamplerSettings(steps=steps, shift=shift, solver="unipc"))
    x = torch.randn(SHAPE)
    ours = run_ours("unipc", sched.sigmas, x)
    ref = run_diffusers(diffusers_unipc(shift), sched.sigmas, x)
    compare(ours, ref)
    assert torch.isfinite(ours[-1]).all()


@pytest.mark.parametrize("steps,shift", [(12, 5.0), (9, 16.0)])
def test_dpmpp_matches_diffusers(steps, shift):
    sched = build_schedule(SamplerSettings(steps=steps, shift=shift, solver="dpm++"))
    assert float(sched.sigmas[0]) == 1.0  # the DPM++ grid starts at exactly 1 (λ = −∞ handled)
    x = torch.randn(SHAPE)
    ours = run_ours("dpm++", sched.sigmas, x)
    ref = run_diffusers(diffusers_dpm(shift), sched.sigmas, x)
    compare(ours, ref)


def test_euler_matches_diffusers():
    sched = build_schedule(SamplerSettings(steps=10, shift=8.0, solver="euler"))
    x = torch.randn(SHAPE)
    ours = run_ours("euler", sched.sigmas, x)
    ref = run_diffusers(FlowMatchEulerDiscreteScheduler(shift=8.0), sched.sigmas, x)
    compare(ours, ref)


def test_unipc_differs_from_euler_so_parity_is_meaningful():
    sched = build_schedule(SamplerSettings(steps=8, shift=5.0))
    x = torch.randn(SHAPE)
    assert rel_err(run_ours("unipc", sched.sigmas, x)[-1], run_ours("euler", sched.sigmas, x)[-1]) > 1e-3
    assert rel_err(run_ours("unipc", sched.sigmas, x)[-1], run_ours("dpm++", sched.sigmas, x)[-1]) > 1e-4


def test_unipc_survives_a_schedule_starting_at_sigma_one():
    """User σ starting at exactly 1 (λ = −∞): UniPC nudges it down by 1e-6, as diffusers' flow UniPC does."""
    sigmas = torch.tensor([1.0, 0.8, 0.5, 0.2, 0.0])
    x = torch.randn(SHAPE)
    out = run_ours("unipc", sigmas, x)
    assert all(torch.isfinite(y).all() for y in out)
    nudged = sigmas.clone()
    nudged[0] = 1.0 - 1e-6
    compare(out, run_diffusers(diffusers_unipc(1.0), nudged, x))
