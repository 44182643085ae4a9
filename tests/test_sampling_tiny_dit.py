"""End to end with the real tiny DiT (wan_core.load_dit on tiny random weights).

The loop is compared with an independent loop around diffusers' UniPCMultistepScheduler fed the
same σ array, noise, timesteps and DiT: this checks noise, CFG, timestep feeding and the solver
together on a real model.
"""

from __future__ import annotations

import pytest
import torch
from conftest import rel_err
from diffusers import UniPCMultistepScheduler

import wan_core
from wan_core.conditioning.types import Conditioning, FrameLock, VaceHint
from wan_core.dit.tiny import tiny_dit_state_dict
from wan_core.sampling import Experts, SamplerSettings, build_schedule, sample, seeded_noise

TEXT_DIM = 64  # wan_core.tiny_models.TINY.text_dim


def load(variant: str, seed: int = 0):
    return wan_core.load_dit(tiny_dit_state_dict(variant, seed=seed), device="cpu", dtype="fp32")


def prompts(seed: int, n: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(6 + 3 * i, TEXT_DIM, generator=g) for i in range(n)]


@pytest.fixture(scope="module")
def t2v():
    return load("wan2.1-t2v")


def reference_unipc_loop(dit, shape, settings, pos, neg):
    """Independent loop: diffusers' flow UniPC fed our σ array, official int timesteps, CFG cond first."""
    sched_ours = build_schedule(settings)
    sched = UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        solver_order=2,
        flow_shift=settings.shift,
        lower_order_final=True,
        final_sigmas_type="zero",
    )
    n = sched_ours.steps
    sched.set_timesteps(n)
    sched.sigmas = sched_ours.sigmas.clone()
    sched.timesteps = sched_ours.timesteps.clone()
    sched.set_begin_index(0)
    x = seeded_noise(shape, settings.seed, 1)
    with torch.no_grad():
        for k in range(n):
            t = sched_ours.timesteps[k : k + 1]
            v_c = dit(x, t, pos)
            v_u = dit(x, t, neg)
            v = v_u + settings.cfg * (v_c - v_u)
            x = sched.step(v, sched.timesteps[k], x, return_dict=False)[0]
    return x


def test_tiny_t2v_matches_diffusers_unipc_loop(t2v):
    shape = (16, 2, 4, 4)
    settings = SamplerSettings(steps=4, shift=5.0, cfg=4.0, seed=11)
    pos, neg = prompts(1), prompts(2)
    ours = sample(t2v, pos, neg, Conditioning(latent_shape=shape), settings, device="cpu")
    ref = reference_unipc_loop(t2v, shape, settings, pos, neg)
    assert ours.shape == (1, *shape) and torch.isfinite(ours).all()
    err = rel_err(ours, ref)
    assert err <= 1e-4, f"rel err {err:.3g}"
    sequential = sample(
        t2v,
        pos,
        neg,
        Conditioning(latent_shape=shape),
        SamplerSettings(steps=4, shift=5.0, cfg=4.0, seed=11, batch_cfg=False),
    )
    assert rel_err(ours, sequential) <= 1e-5


def test_tiny_a14b_experts_and_float_mode(t2v):
    high, low = load("wan2.2-t2v", seed=1), load("wan2.2-t2v", seed=2)
    shape = (16, 2, 4, 4)
    pos, neg = prompts(3), prompts(4)
    settings = SamplerSettings(steps=4, shift=12.0, cfg=(3.0, 4.0), seed=5)  # t = 999, 972, 922 | 799
    both = sample(Experts(high=high, low=low, offload="always"), pos, neg, Conditioning(latent_shape=shape), settings)
    only_high = sample(Experts(high=high, low=high), pos, neg, Conditioning(latent_shape=shape), settings)
    assert torch.isfinite(both).all() and rel_err(both, only_high) > 1e-4  # the low expert was used
    floats = sample(
        t2v,
        pos,
        neg,
        Conditioning(latent_shape=shape),
        SamplerSettings(steps=3, shift=12.0, cfg=1.0, seed=5, timestep_mode="float"),
    )
    ints = sample(
        t2v, pos, neg, Conditioning(latent_shape=shape), SamplerSettings(steps=3, shift=12.0, cfg=1.0, seed=5)
    )
    assert torch.isfinite(floats).all() and rel_err(floats, ints) > 0  # the DiT saw 1000·σ, not int(1000·σ)


def test_tiny_ti2v_frame_lock_and_vace():
    ti2v = load("wan2.2-ti2v")
    shape = (48, 3, 4, 4)
    first = torch.randn(1, 48, 3, 4, 4)
    mask = torch.ones(1, 1, 3, 1, 1)
    mask[:, :, 0] = 0
    cond = Conditioning(latent_shape=shape, frame_lock=FrameLock(latent=first, mask=mask))
    out = sample(ti2v, prompts(5), prompts(6), cond, SamplerSettings(steps=3, cfg=5.0, batch_size=2))
    assert out.shape == (2, *shape) and torch.equal(out[:, :, 0], first[:, :, 0].expand(2, -1, -1, -1))
    vace = load("wan2.1-vace")
    ctx = torch.randn(1, 96, 3, 4, 4)
    hint = VaceHint(context=ctx, strength=1.0, start=0.0, end=0.5)
    cond = Conditioning(latent_shape=(16, 3, 4, 4), vace=(hint,), trim_latent_frames=1)
    with_hint = sample(vace, prompts(7), None, cond, SamplerSettings(steps=3, cfg=1.0))
    without = sample(vace, prompts(7), None, cond.with_(vace=()), SamplerSettings(steps=3, cfg=1.0))
    assert with_hint.shape == (1, 16, 2, 4, 4) and rel_err(with_hint, without) > 1e-4
