"""The sampling loop with fake DiTs: call counts, CFG, seeds, experts, interrupts, locks, VACE, previews."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest
import torch
from conftest import rel_err

from wan_core.conditioning.types import Conditioning, FrameLock, VaceHint
from wan_core.errors import InputError, WanInterrupted
from wan_core.progress import RunHooks
from wan_core.sampling import Experts, SamplerSettings, build_schedule, latent_preview, sample, seeded_noise
from wan_core.sampling.experts import Residency

SHAPE = (4, 3, 4, 6)  # C, T, h, w
TEXT_DIM = 8


class FakeDiT(torch.nn.Module):
    """A deterministic nonlinear velocity that depends on x, t, the text and the conditioning."""

    def __init__(self, task: str = "t2v", family: str = "wan2.1", gain: float = 1.0, keep_x: bool = False):
        super().__init__()
        self.config = SimpleNamespace(task=task, family=family, out_dim=SHAPE[0], patch_size=(1, 2, 2))
        self.weight = torch.nn.Parameter(torch.tensor(gain))
        self.calls: list[dict] = []
        self.keep_x = keep_x

    @property
    def device(self) -> torch.device:  # the sampler's DiT contract (wan_core.sampling.model.DiTLike)
        return self.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.weight.dtype

    def forward(self, x, t, context, clip_fea=None, y=None, vace_context=None, vace_scale=1.0):
        b = x.shape[0]
        self.calls.append(
            {
                "batch": b,
                "t": t.clone(),
                "x": x.clone() if self.keep_x else None,
                "vace": None if vace_context is None else (len(vace_context), list(vace_scale)),
                "y": None if y is None else tuple(y.shape),
            }
        )
        assert isinstance(context, list) and len(context) == b
        tt = t.float().reshape(b, -1).mean(1).view(b, 1, 1, 1, 1) / 1000.0
        c = torch.stack([ctx.float().mean() for ctx in context]).view(b, 1, 1, 1, 1)
        v = self.weight * torch.tanh(0.7 * x + c) * 0.5 + x * tt - 0.3 * c
        if y is not None:
            v = v + y.mean(dim=1, keepdim=True)
        if vace_context is not None:
            v = v + sum(s * vc[:, :1].mean() for vc, s in zip(vace_context, vace_scale))
        return v


def texts(seed: int, n: int = 1, length: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(length + i, TEXT_DIM, generator=g) for i in range(n)]


POS, NEG = texts(1), texts(2)


def run(model, settings, cond=None, hooks=None, negative=NEG):
    return sample(model, POS, negative, cond or Conditioning(latent_shape=SHAPE), settings, hooks=hooks)


def test_output_shape_device_and_cfg1_single_forward():
    dit = FakeDiT()
    out = run(dit, SamplerSettings(steps=6, cfg=1.0), negative=None)
    assert out.shape == (1, *SHAPE) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert len(dit.calls) == 6 and all(c["batch"] == 1 for c in dit.calls)
    assert [int(c["t"][0]) for c in dit.calls] == build_schedule(SamplerSettings(steps=6)).timesteps.tolist()
    assert dit.calls[0]["t"].dtype == torch.int64


def test_batched_and_sequential_cfg_agree():
    a, b = FakeDiT(), FakeDiT()
    out_a = run(a, SamplerSettings(steps=5, cfg=4.0, batch_cfg=True))
    out_b = run(b, SamplerSettings(steps=5, cfg=4.0, batch_cfg=False))
    assert len(a.calls) == 5 and all(c["batch"] == 2 for c in a.calls)
    assert len(b.calls) == 10 and all(c["batch"] == 1 for c in b.calls)
    assert rel_err(out_a, out_b) <= 1e-5
    assert rel_err(out_a, run(FakeDiT(), SamplerSettings(steps=5, cfg=1.0))) > 1e-3  # guidance matters


def test_cfg_without_negative_is_an_error():
    with pytest.raises(InputError, match="negative"):
        run(FakeDiT(), SamplerSettings(steps=2, cfg=3.0), negative=None)


def test_same_seed_same_latent_and_seed_batch():
    s = SamplerSettings(steps=4, cfg=3.0, seed=7)
    assert torch.equal(run(FakeDiT(), s), run(FakeDiT(), s))
    assert rel_err(run(FakeDiT(), s), run(FakeDiT(), SamplerSettings(steps=4, cfg=3.0, seed=8))) > 1e-2
    batch = run(FakeDiT(), SamplerSettings(steps=4, cfg=3.0, seed=7, batch_size=3))
    assert batch.shape[0] == 3
    for i in range(3):
        single = run(FakeDiT(), SamplerSettings(steps=4, cfg=3.0, seed=7 + i))
        assert rel_err(batch[i : i + 1], single) <= 1e-6
    assert torch.equal(seeded_noise(SHAPE, 5, 2)[1], seeded_noise(SHAPE, 6, 1)[0])


def test_moe_switch_step_and_per_expert_cfg():
    high, low = FakeDiT(), FakeDiT(gain=-0.5)
    experts = Experts(high=high, low=low)  # boundary from task t2v -> 875
    run(experts, SamplerSettings(steps=40, shift=12.0, cfg=(1.0, 4.0)))  # (low_noise, high_noise)
    assert len(high.calls) == 26 and all(c["batch"] == 2 and int(c["t"][0]) >= 875 for c in high.calls)
    assert len(low.calls) == 14 and all(c["batch"] == 1 and int(c["t"][0]) < 875 for c in low.calls)
    i2v_high, i2v_low = FakeDiT(task="i2v"), FakeDiT(task="i2v")
    run(Experts(high=i2v_high, low=i2v_low), SamplerSettings(steps=40, shift=5.0, cfg=(1.0, 3.5)))
    assert len(i2v_high.calls) == 15 and all(c["batch"] == 2 for c in i2v_high.calls)
    assert len(i2v_low.calls) == 25 and all(c["batch"] == 1 for c in i2v_low.calls)
    h3, l3 = FakeDiT(), FakeDiT()
    run(Experts(high=h3, low=l3, boundary=0.5), SamplerSettings(steps=10, shift=1.0, solver="euler"))
    assert len(h3.calls) == 6 and len(l3.calls) == 4  # t = 1000, 900, ..., 500 | 400, ..., 100


ODD_SHAPE = (4, 3, 4, 10)  # used only by the release tests, so leftovers are easy to find


def live_tensors_of_shape(shape) -> int:
    """Tensors [B, *shape] still reachable after a run (the traceback is still alive in pytest.raises)."""
    gc.collect()
    count = 0
    for obj in gc.get_objects():
        if type(obj) is torch.Tensor and obj.ndim == 5 and tuple(obj.shape[1:]) == shape:
            count += 1
    return count


def test_interrupt_stops_frees_and_next_run_works():
    dit = FakeDiT()
    state = {"checks": 0}

    def interrupted():
        state["checks"] += 1
        return len(dit.calls) >= 3

    cond = Conditioning(latent_shape=ODD_SHAPE)
    with pytest.raises(WanInterrupted) as excinfo:
        sample(dit, POS, None, cond, SamplerSettings(steps=8, cfg=1.0), hooks=RunHooks(interrupted=interrupted))
    assert len(dit.calls) == 3
    assert live_tensors_of_shape(ODD_SHAPE) == 0, "latents of the interrupted run are still alive"
    del excinfo
    fresh = run(FakeDiT(), SamplerSettings(steps=8, cfg=1.0), negative=None)
    again = run(dit, SamplerSettings(steps=8, cfg=1.0), negative=None)
    assert torch.equal(fresh, again)


def test_error_in_model_releases_and_next_run_works():
    class Exploding(FakeDiT):
        def forward(self, x, *args, **kwargs):
            if len(self.calls) == 2:
                raise RuntimeError("boom")
            return super().forward(x, *args, **kwargs)

    dit = Exploding()
    with pytest.raises(RuntimeError, match="boom") as excinfo:
        sample(dit, POS, NEG, Conditioning(latent_shape=ODD_SHAPE), SamplerSettings(steps=5, cfg=2.0))
    assert live_tensors_of_shape(ODD_SHAPE) == 0  # even while the traceback is alive
    del excinfo
    assert run(FakeDiT(), SamplerSettings(steps=5, cfg=2.0)).shape == (1, *SHAPE)


def test_progress_and_previews():
    seen = []
    hooks = RunHooks(progress=lambda step, total, preview: seen.append((step, total, preview)), want_preview=True)
    run(FakeDiT(), SamplerSettings(steps=3, cfg=2.0), hooks=hooks)
    assert [(s, t) for s, t, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    assert all(img is None for _, _, img in seen)  # no RGB factors for a 4-channel latent: no preview, no error
    seen.clear()
    shape16 = (16, 3, 4, 6)
    sample(FakeDiT16(), POS, NEG, Conditioning(latent_shape=shape16), SamplerSettings(steps=2, cfg=2.0), hooks=hooks)
    assert len(seen) == 2
    for _, _, img in seen:
        assert img.shape == (4, 6, 3) and 0.0 <= float(img.min()) and float(img.max()) <= 1.0


class FakeDiT16(FakeDiT):
    def __init__(self):
        super().__init__()
        self.config.out_dim = 16


def test_denoise_starts_at_the_truncated_step_from_the_init_latent():
    init = torch.randn(1, *SHAPE)
    dit = FakeDiT(keep_x=True)
    cond = Conditioning(latent_shape=SHAPE, init_latent=init)
    run(dit, SamplerSettings(steps=6, shift=3.0, denoise=0.5, seed=3, cfg=1.0), cond=cond, negative=None)
    full = build_schedule(SamplerSettings(steps=12, shift=3.0))
    assert len(dit.calls) == 6
    assert [int(c["t"][0]) for c in dit.calls] == full.timesteps[6:].tolist()
    sigma = float(full.sigmas[6])
    expected = (1 - sigma) * init + sigma * seeded_noise(SHAPE, 3, 1)
    assert rel_err(dit.calls[0]["x"], expected) <= 1e-6
    with pytest.raises(InputError, match="init latent"):
        run(FakeDiT(), SamplerSettings(steps=4, denoise=0.5, cfg=1.0), negative=None)


def test_frame_lock_keeps_frame0_and_gives_per_token_timesteps():
    locked = torch.randn(1, *SHAPE)
    mask = torch.ones(1, 1, SHAPE[1], 1, 1)
    mask[:, :, 0] = 0
    cond = Conditioning(latent_shape=SHAPE, frame_lock=FrameLock(latent=locked, mask=mask))
    dit = FakeDiT(task="ti2v", family="wan2.2")
    out = run(dit, SamplerSettings(steps=4, cfg=2.0, batch_size=2), cond=cond)
    assert torch.equal(out[:, :, 0], locked[:, :, 0].expand(2, -1, -1, -1))
    assert not torch.equal(out[:, :, 1], locked[:, :, 1].expand(2, -1, -1, -1))
    tokens_per_frame = (SHAPE[2] // 2) * (SHAPE[3] // 2)
    for call, t in zip(dit.calls, build_schedule(SamplerSettings(steps=4)).timesteps.tolist()):
        assert call["t"].shape == (4, SHAPE[1] * tokens_per_frame)  # cond+uncond x 2 seeds
        assert torch.all(call["t"][:, :tokens_per_frame] == 0)
        assert torch.all(call["t"][:, tokens_per_frame:] == t)


def test_vace_hints_only_inside_their_step_range_and_trim():
    ctx = torch.randn(1, 96, *SHAPE[1:])
    hints = (VaceHint(context=ctx, strength=0.5, start=0.0, end=0.5), VaceHint(context=ctx, strength=2.0, start=0.5))
    cond = Conditioning(latent_shape=SHAPE, vace=hints, trim_latent_frames=1, y=torch.randn(1, 2, *SHAPE[1:]))
    dit = FakeDiT(task="vace")
    out = run(dit, SamplerSettings(steps=10, cfg=3.0), cond=cond)
    assert [c["vace"] for c in dit.calls] == [(1, [0.5])] * 5 + [(1, [2.0])] * 5
    assert all(c["y"] == (2, 2, *SHAPE[1:]) for c in dit.calls)
    assert out.shape == (1, SHAPE[0], SHAPE[1] - 1, SHAPE[2], SHAPE[3])


def test_latent_preview_channels_and_frames():
    z16 = torch.randn(16, 5, 4, 6)
    img = latent_preview(z16, 16)
    assert img.shape == (4, 6, 3) and img.min() >= 0 and img.max() <= 1
    assert torch.equal(img, latent_preview(z16[None], 16, frame=2))
    assert not torch.equal(latent_preview(z16, 16, frame=0), img)
    assert latent_preview(torch.randn(1, 48, 3, 2, 2), 48).shape == (2, 2, 3)
    with pytest.raises(InputError):
        latent_preview(torch.randn(7, 1, 2, 2), 7)


class Movable(torch.nn.Module):
    def __init__(self, name, log, device):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1000))
        self.name, self.log, self._device = name, log, torch.device(device)

    @property
    def device(self):
        return self._device

    def to(self, device):
        self.log.append((self.name, str(device)))
        self._device = torch.device(device)
        return self


def test_residency_offloads_inactive_expert(monkeypatch):
    import wan_core.sampling.experts as experts_mod

    log: list = []
    high, low = Movable("high", log, "cuda"), Movable("low", log, "cuda")
    res = Residency([high, low], torch.device("cuda"), mode="always")
    res.activate(high)
    res.activate(low)
    assert log == [("low", "cpu"), ("high", "cpu"), ("low", "cuda")]

    log.clear()
    high, low = Movable("high", log, "cuda"), Movable("low", log, "cpu")
    monkeypatch.setattr(experts_mod, "free_memory", lambda device: 10)  # too little for 4000 bytes
    Residency([high, low], torch.device("cuda"), mode="auto").activate(low)
    assert log == [("high", "cpu"), ("low", "cuda")]
    log.clear()
    high, low = Movable("high", log, "cuda"), Movable("low", log, "cpu")
    monkeypatch.setattr(experts_mod, "free_memory", lambda device: 1 << 30)
    Residency([high, low], torch.device("cuda"), mode="auto").activate(low)
    assert log == [("low", "cuda")]
    log.clear()
    Residency([high, low], torch.device("cuda"), mode="never").activate(high)
    assert log == []


def test_user_sigmas_and_float_timesteps_reach_the_model():
    dit = FakeDiT()
    run(
        dit, SamplerSettings(sigmas=[1.0, 0.5, 0.2, 0.0], solver="euler", cfg=1.0, timestep_mode="float"), negative=None
    )
    assert [float(c["t"][0]) for c in dit.calls] == pytest.approx([1000.0, 500.0, 200.0], abs=1e-3)
    assert all(c["t"].dtype == torch.float32 for c in dit.calls)
    # Euler by hand on the same field: x1 = x0 + (σ1 − σ0)·v(x0), ...
    x = seeded_noise(SHAPE, 0, 1)
    ref = FakeDiT()
    with torch.no_grad():
        for s0, s1 in [(1.0, 0.5), (0.5, 0.2), (0.2, 0.0)]:
            x = x + (s1 - s0) * ref(x, torch.tensor([1000.0 * s0]), POS)
    out = run(
        FakeDiT(),
        SamplerSettings(sigmas=[1.0, 0.5, 0.2, 0.0], solver="euler", cfg=1.0, timestep_mode="float"),
        negative=None,
    )
    assert rel_err(out, x) <= 1e-6


def test_batched_cfg_falls_back_to_sequential_on_out_of_memory():
    class NoRoomForTwo(FakeDiT):
        def forward(self, x, *args, **kwargs):
            if x.shape[0] > 1:
                raise torch.OutOfMemoryError("fake: batch 2 does not fit")
            return super().forward(x, *args, **kwargs)

    dit = NoRoomForTwo()
    out = run(dit, SamplerSettings(steps=3, cfg=4.0, batch_cfg=True))
    assert len(dit.calls) == 6 and all(c["batch"] == 1 for c in dit.calls)
    assert rel_err(out, run(FakeDiT(), SamplerSettings(steps=3, cfg=4.0, batch_cfg=False))) <= 1e-6


def test_conditioning_moves_to_the_device_once_per_run(monkeypatch):
    ctx = torch.randn(1, 96, *SHAPE[1:])
    cond = Conditioning(
        latent_shape=SHAPE,
        y=torch.randn(1, 2, *SHAPE[1:]),
        clip_fea=torch.randn(1, 257, 16),
        camera=torch.randn(1, 24, SHAPE[1], 8, 8),
        vace=(VaceHint(context=ctx, strength=0.5, start=0.2),),
    )
    moved = cond.on(torch.device("meta"))
    assert [t.device.type for t in (moved.y, moved.clip_fea, moved.camera, moved.vace[0].context)] == ["meta"] * 4
    assert (moved.vace[0].strength, moved.vace[0].start, moved.latent_shape) == (0.5, 0.2, SHAPE)
    assert cond.camera is not None and cond.camera.device.type == "cpu"  # the original is left as it was

    moves = []
    real_on = Conditioning.on
    monkeypatch.setattr(Conditioning, "on", lambda self, device: moves.append(device) or real_on(self, device))
    dit = FakeDiT(task="vace")
    run(dit, SamplerSettings(steps=5, cfg=3.0), cond=cond.with_(camera=None, clip_fea=None))
    assert len(dit.calls) == 5 and moves == [torch.device("cpu")]  # once, not once per step
