"""Step caches (EasyCache, MagCache, TeaCache) on the real tiny DiT.

* threshold 0 (and no cache) gives bit-identical latents to the uncached loop, with CFG batched or not;
* a tiny model's DiT inputs / outputs / embeddings are recorded once from an uncached run; each method's
  skip decisions on that sequence equal a straightforward implementation of its published rule, written
  here (EasyCache: ComfyUI's node and the authors' code; MagCache and TeaCache: the authors' Wan2.1 code);
* the Wan2.2 A14B pair never reuses across the expert switch, nor across a change of CFG layout;
* MagCache calibration records the magnitude ratios of the run's residuals and saves them.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import rel_err

import wan_core
import wan_core.sampling.loop as loop_module
from wan_core.conditioning.types import Conditioning
from wan_core.dit.tiny import tiny_dit_state_dict
from wan_core.errors import InputError
from wan_core.progress import RunHooks
from wan_core.sampling import Experts, SamplerSettings, build_schedule, sample
from wan_core.sampling.cache import (
    CacheRun,
    EasyCacheSettings,
    MagCacheSettings,
    StepRecord,
    TeaCacheSettings,
    cache_from_dict,
    load_calibration,
)
from wan_core.sampling.cache.base import StepCache
from wan_core.sampling.cache.curves import magcache_ratios
from wan_core.sampling.cache.easycache import EasyCacheState
from wan_core.sampling.cache.magcache import MagCacheState
from wan_core.sampling.cache.teacache import TeaCacheState
from wan_core.sampling.guidance import GuidanceOptions

TEXT_DIM = 64
SHAPE = (16, 2, 16, 16)  # latent C, T, h, w: h, w > 8 so that ComfyUI's 8x subsampling keeps 2x2
STEPS = 12


def prompts(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(6, TEXT_DIM, generator=g)]


POS, NEG = prompts(1), prompts(2)


@pytest.fixture(scope="module")
def t2v():
    return wan_core.load_dit(tiny_dit_state_dict("wan2.1-t2v"), device="cpu", dtype="fp32")


def run(model, settings, reports=None, shape=SHAPE):
    hooks = RunHooks(on_report=reports.append) if reports is not None else None
    return sample(model, POS, NEG, Conditioning(latent_shape=shape), settings, hooks=hooks)


# --------------------------------------------------------------------------- off = bit-identical


OFF = [
    None,
    EasyCacheSettings(reuse_threshold=0.0, start_percent=0.0),
    EasyCacheSettings(reuse_threshold=0.0, mode="paper"),
    MagCacheSettings(threshold=0.0, retention=0.0, k=10),
    TeaCacheSettings(threshold=0.0),
    TeaCacheSettings(threshold=0.0, embedding="e"),
]


@pytest.mark.parametrize("batch_cfg", [True, False])
def test_threshold_zero_and_cache_off_are_bit_identical(t2v, batch_cfg):
    base = SamplerSettings(steps=3, cfg=5.0, seed=3, batch_cfg=batch_cfg)
    reference = run(t2v, base)
    reports = []
    for cache in OFF if batch_cfg else OFF[1:4]:
        out = run(t2v, SamplerSettings(**{**base.__dict__, "cache": cache}), reports)
        assert torch.equal(out, reference), cache
        assert reports[-1].marks == "RRR" and reports[-1].dit_calls == 6, (cache, reports[-1].marks)


# --------------------------------------------------------------------------- a recorded sequence


class _RecordingStep(StepCache):
    """Runs every forward and records the latent, each forward's output and the DiT block hook data."""

    def __init__(self, log: dict, k: int) -> None:
        super().__init__(StepRecord(step=k))
        self.log, self.k = log, k

    def start(self, branches, x):
        super().start(branches, x)
        self.log["x"].append(x.clone())
        self.log["calls"].append([])

    def forward(self, branches, x, call):
        hook = _RecordingHook()
        out = call(hook)
        self.log["calls"][-1].append({"branches": branches, "x": x.clone(), "out": out.clone(), **hook.data})
        return out


class _RecordingHook:
    def __init__(self):
        self.data = {}

    def run_blocks(self, x, e, e0, blocks):
        self.data.update(tokens=x.clone(), e=e.clone(), e0=e0.clone())
        y = blocks(x)  # (in place on x)
        self.data["y"] = y.clone()
        return y


@pytest.fixture(scope="module")
def recorded(t2v):
    """{x: [latent per step], calls: [[forward records] per step], sigmas, settings} of an uncached run."""
    log = {"x": [], "calls": []}

    class Recorder(CacheRun):
        def step(self, k, dit):
            return _RecordingStep(log, k)

    settings = SamplerSettings(steps=STEPS, cfg=5.0, shift=5.0, seed=11)
    original = loop_module.CacheRun
    loop_module.CacheRun = Recorder
    try:
        log["latent"] = run(t2v, settings)
    finally:
        loop_module.CacheRun = original
    log["sigmas"] = [float(s) for s in build_schedule(settings).sigmas.tolist()]
    return log


def _replay_easycache(log, settings: EasyCacheSettings) -> list[bool]:
    """Our EasyCache state on the recorded sequence -> per step: did the DiT run?"""
    state = EasyCacheState(settings, log["sigmas"], 5.0)
    ran = []
    for k, (x, calls) in enumerate(zip(log["x"], log["calls"], strict=True)):
        record = StepRecord(step=k)
        step = state.step(k, record)
        (call,) = calls
        step.start(call["branches"], x)
        out = step.forward(call["branches"], call["x"], lambda hook, out=call["out"]: out)
        ran.append(record.ran > 0)
        if record.ran == 0:  # reused: x + (o_τ − x_τ) per branch
            assert rel_err(out, call["x"] + state_diffs(state, call["branches"])) < 1e-7
    return ran


def state_diffs(state, branches):
    return torch.cat([state.diffs[b] for b in branches])


def _flow_sigma(percent: float, shift: float) -> float:
    if percent <= 0:
        return 1.0
    if percent >= 1:
        return 0.0
    t = 1.0 - percent
    return float(np.float32(shift * t / (1 + (shift - 1) * t)))


def _l1(a, b=None):
    return float((a if b is None else a - b).abs().mean())


def reference_easycache(log, threshold, start, end, mode) -> list[bool]:
    """EasyCache as written in ComfyUI's node ("comfyui") / the authors' Wan code ("paper").

    k from the last two computed steps τ' < τ: |o_τ − o_τ'| / |x_τ − x_τ'|; E += k·|x_t − x_ref| / |O_τ| with
    x_ref = x_τ (comfyui, 8x subsampled h/w, O = the whole cond+uncond output) or x_(t−1) (paper, O = o_τ);
    reuse while E < threshold (else E = 0); only steps with σ <= σ(start) may reuse, σ <= σ(end) always run.
    """
    sub = (lambda t: t[..., ::8, ::8]) if mode == "comfyui" else (lambda t: t)
    s_start, s_end = _flow_sigma(start, 5.0), _flow_sigma(end, 5.0)
    computed, ran, acc, started = [], [], 0.0, False  # computed: (x, o_cond, whole) of tracked steps
    for t, (x, (call,)) in enumerate(zip(log["x"], log["calls"], strict=True)):
        sigma = log["sigmas"][t]
        if sigma <= s_end:
            ran.append(True)
            continue
        started = started or sigma <= s_start
        tracked = started or mode == "paper"
        reuse = False
        if sigma <= s_start and len(computed) >= 2:
            (x1, o1, _), (x2, o2, w2) = computed[-2], computed[-1]
            k = _l1(sub(o2), sub(o1)) / _l1(sub(x2), sub(x1))
            x_ref = x2 if mode == "comfyui" else log["x"][t - 1]
            acc += k * _l1(sub(x), sub(x_ref)) / (_l1(w2) if mode == "comfyui" else _l1(o2))
            reuse = acc < threshold
            acc = acc if reuse else 0.0
        ran.append(not reuse)
        if not reuse and tracked:
            cond = call["out"][: x.shape[0]]
            computed.append((x, cond, call["out"]))
    return ran


@pytest.mark.parametrize("mode", ["comfyui", "paper"])
def test_easycache_decisions_equal_the_reference(recorded, mode):
    mixed = 0
    for threshold in (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6):
        for start, end in ((0.15, 0.95), (0.0, 1.0), (0.3, 0.7)):
            settings = EasyCacheSettings(reuse_threshold=threshold, start_percent=start, end_percent=end, mode=mode)
            ours = _replay_easycache(recorded, settings)
            assert ours == reference_easycache(recorded, threshold, start, end, mode), (threshold, start, end)
            mixed += 0 < sum(ours) < len(ours)
    assert mixed >= 3, "the thresholds never produced a mix of reused and computed steps"


def _replay_residual(log, state) -> dict[tuple[int, str], bool]:
    """Our block-cache state on the recorded sequence -> {(step, branch): reused}."""
    decisions = {}
    original = state.decide

    def spy(branch, k, e, e0):
        decisions[(k, branch)] = original(branch, k, e, e0)
        return decisions[(k, branch)]

    state.decide = spy
    for k, (x, calls) in enumerate(zip(log["x"], log["calls"], strict=True)):
        record = StepRecord(step=k)
        step = state.step(k, record)
        (call,) = calls
        step.start(call["branches"], x)
        blocks_ran = []

        def model(hook, call=call, blocks_ran=blocks_ran):
            return hook.run_blocks(call["tokens"], call["e"], call["e0"], lambda t: blocks_ran.append(1) or call["y"])

        out = step.forward(call["branches"], call["x"], model)
        reused = [decisions[(k, b)] for b in call["branches"]]
        assert bool(blocks_ran) == (not all(reused)) and (record.ran > 0) == (not all(reused))
        if all(reused):
            assert rel_err(out, call["tokens"] + torch.cat([state.residuals[b] for b in call["branches"]])) < 1e-7
    return decisions


def _nearest(values, n):
    if n == 1:
        return [values[-1]]
    return [values[int(np.round(i * (len(values) - 1) / (n - 1)))] for i in range(n)]


def reference_magcache(ratios, steps, threshold, k_max, retention) -> dict[tuple[int, str], bool]:
    """The authors' Wan2.1 loop: calls i = 0, 1, 2, ... alternate cond / uncond, one accumulator each."""
    if len(ratios) != 2 * steps:
        cond, uncond = _nearest(list(ratios[0::2]), steps), _nearest(list(ratios[1::2]), steps)
        ratios = [v for pair in zip(cond, uncond) for v in pair]
    acc_ratio, acc_err, acc_steps = [1.0, 1.0], [0.0, 0.0], [0, 0]
    cached = [False, False]  # (with retention 0 the authors' code would reuse a residual it does not have)
    out = {}
    for i in range(2 * steps):
        b, skip = i % 2, False
        if i >= int(2 * steps * retention):
            acc_ratio[b] *= ratios[i]
            acc_steps[b] += 1
            acc_err[b] += abs(1 - acc_ratio[b])
            if acc_err[b] < threshold and acc_steps[b] <= k_max and cached[b]:
                skip = True
            else:
                acc_ratio[b], acc_err[b], acc_steps[b] = 1.0, 0.0, 0
        cached[b] = True
        out[(i // 2, ("cond", "uncond")[b])] = skip
    return out


def test_magcache_decisions_equal_the_reference(recorded):
    _, published = magcache_ratios("wan2.1-t2v-1.3b", "")
    mixed = 0
    for threshold, k, retention in ((0.12, 2, 0.2), (0.06, 2, 0.2), (0.3, 4, 0.1), (0.5, 1, 0.4), (1.0, 3, 0.0)):
        settings = MagCacheSettings(threshold=threshold, k=k, retention=retention)
        ours = _replay_residual(recorded, MagCacheState(settings, published, STEPS))
        want = reference_magcache(list(published), STEPS, threshold, k, retention)
        assert ours == want, (threshold, k, retention)
        mixed += 0 < sum(ours.values()) < len(ours)
    assert mixed >= 3


def reference_teacache(log, coefficients, threshold, embedding) -> dict[tuple[int, str], bool]:
    """The authors' TeaCache4Wan2.1 loop: one accumulator and previous embedding per branch (even/odd call)."""
    ret, cutoff = (5, STEPS) if embedding == "e0" else (1, STEPS - 1)
    poly = np.poly1d(coefficients)
    acc, previous, out = {}, {}, {}
    for t, (call,) in enumerate(log["calls"]):
        for i, b in enumerate(call["branches"]):
            m = call[embedding][i : i + 1]
            if t < ret or t >= cutoff:
                acc[b], reuse = 0.0, False
            else:
                acc[b] += poly(float((m - previous[b]).abs().mean() / previous[b].abs().mean()))
                reuse = acc[b] < threshold
                acc[b] = acc[b] if reuse else 0.0
            previous[b], out[(t, b)] = m, reuse
    return out


@pytest.mark.parametrize("embedding", ["e0", "e"])
def test_teacache_decisions_equal_the_reference(recorded, embedding):
    from wan_core.sampling.cache.curves import teacache_coefficients

    _, coefficients = teacache_coefficients("wan2.1-t2v-1.3b", "", embedding)
    distances = []
    for t in range(1, STEPS):
        a, b = recorded["calls"][t - 1][0][embedding][:1], recorded["calls"][t][0][embedding][:1]
        distances.append(np.poly1d(coefficients)(float((b - a).abs().mean() / a.abs().mean())))
    mixed = 0
    for threshold in sorted({abs(float(d)) * f for d in distances[5:9] for f in (0.5, 1.5, 3.0)} | {1e9}):
        settings = TeaCacheSettings(threshold=threshold, embedding=embedding)
        ours = _replay_residual(recorded, TeaCacheState(settings, coefficients, STEPS))
        assert ours == reference_teacache(recorded, coefficients, threshold, embedding), threshold
        mixed += 0 < sum(ours.values()) < len(ours)
    assert mixed >= 1


def test_block_cache_decisions_in_the_real_loop_match_the_replay(t2v, recorded):
    """MagCache and TeaCache decisions depend only on the schedule, the data and e: the cached run of the
    same settings skips exactly the steps of the replay, and the marks say so."""
    _, published = magcache_ratios("wan2.1-t2v-1.3b", "")
    settings = MagCacheSettings(threshold=0.3, k=4, retention=0.1)
    want = _replay_residual(recorded, MagCacheState(settings, published, STEPS))
    reports = []
    out = run(t2v, SamplerSettings(steps=STEPS, cfg=5.0, shift=5.0, seed=11, cache=settings), reports)
    marks = "".join("C" if want[(k, "cond")] and want[(k, "uncond")] else "R" for k in range(STEPS))
    assert reports[-1].marks == marks and "C" in marks
    assert reports[-1].dit_calls == 2 * marks.count("R") < 2 * STEPS
    assert 0 < rel_err(out, recorded["latent"]) < 1.0  # reuse changes the result, within reason


# --------------------------------------------------------------------------- experts, layout, runs


@pytest.fixture(scope="module")
def pair():
    load = wan_core.load_dit
    return load(tiny_dit_state_dict("wan2.2-t2v", seed=1), dtype="fp32"), load(
        tiny_dit_state_dict("wan2.2-t2v", seed=2), dtype="fp32"
    )


GREEDY = [
    EasyCacheSettings(reuse_threshold=1e9, start_percent=0.0, end_percent=1.0),
    EasyCacheSettings(reuse_threshold=1e9, start_percent=0.0, end_percent=1.0, mode="paper"),
    MagCacheSettings(threshold=1e9, k=100, retention=0.0),
    TeaCacheSettings(threshold=1e9, embedding="e", coefficients="wan2.1-t2v-14b"),
]


@pytest.mark.parametrize("cache", GREEDY, ids=lambda c: f"{c.method}-{getattr(c, 'mode', '')}")
def test_a14b_experts_never_reuse_across_the_switch(pair, cache):
    """With thresholds that reuse whenever anything is cached, each expert's first steps still run the DiT:
    nothing computed by the high-noise expert is ever reused by the low-noise one."""
    high, low = pair
    experts = Experts(high=high, low=low, boundary=0.5)
    reports = []
    settings = SamplerSettings(steps=8, shift=1.0, solver="euler", cfg=1.0, cache=cache)
    out = run(experts, settings, reports)  # t = 1000, 875, 750, 625, 500 | 375, 250, 125
    records = reports[-1].records
    switch = [r.expert for r in records].index("low")
    assert [r.expert for r in records] == ["high"] * switch + ["low"] * (8 - switch) and switch == 5
    warmup = 2 if cache.method == "easycache" else 1  # EasyCache needs two computed steps for its rate
    for first in (0, switch):
        assert [r.mark for r in records[first : first + warmup]] == ["R"] * warmup, reports[-1].marks
    assert "C" in reports[-1].marks[switch + warmup :], reports[-1].marks  # and it does reuse within an expert
    assert torch.isfinite(out).all()


def test_one_dit_in_both_expert_roles_still_gets_two_caches(pair):
    high, _ = pair
    reports = []
    cache = MagCacheSettings(threshold=1e9, k=100, retention=0.0)
    settings = SamplerSettings(steps=8, shift=1.0, solver="euler", cfg=1.0, cache=cache)
    run(Experts(high=high, low=high, boundary=0.5), settings, reports)
    assert reports[-1].marks == "RCCCCRCC"


def test_cfg_range_change_resets_the_cache(t2v):
    """Guidance only for the first half: the step where CFG stops is a new layout and runs the DiT."""
    reports = []
    options = GuidanceOptions(cfg_start=0.0, cfg_end=0.5)
    cache = MagCacheSettings(threshold=1e9, k=100, retention=0.0)
    run(t2v, SamplerSettings(steps=6, cfg=4.0, cache=cache, guidance=options), reports)
    records = reports[-1].records
    assert [r.needed for r in records] == [2] * 3 + [1] * 3
    assert reports[-1].marks == "RCCRCC"


def test_runs_start_empty(t2v):
    reports = []
    cache = MagCacheSettings(threshold=1e9, k=100, retention=0.0)
    for _ in range(2):
        run(t2v, SamplerSettings(steps=4, cfg=4.0, cache=cache), reports)
    assert reports[0].marks == reports[1].marks == "RCCC"


def test_magcache_calibration_records_the_residual_ratios(t2v, tmp_path, monkeypatch):
    """The saved curve is, per step and branch, mean over tokens of |r_t| / |r_(t-1)| of the block residual
    r = y - x that the DiT produced in this very run (seen from the outside through the block hook)."""
    from wan_core.sampling.cache import residual

    seen = {}  # (step, branch) -> r, from the tokens before and after the blocks
    original = residual._Hook.run_blocks

    def spy(self, x, e, e0, blocks):
        before = x.clone()
        y = original(self, x, e, e0, blocks)
        for i, b in enumerate(self.branches):
            seen[(self.k, b)] = (y[i] - before[i]).clone()
        return y

    monkeypatch.setattr(residual._Hook, "run_blocks", spy)
    path = tmp_path / "cal" / "tiny.json"
    reports = []
    settings = SamplerSettings(steps=STEPS, cfg=5.0, shift=5.0, seed=11, cache=MagCacheSettings(calibrate=str(path)))
    run(t2v, settings, reports)
    assert reports[-1].marks == "R" * STEPS
    saved = json.loads(path.read_text())
    assert saved["model"] == "wan2.1-t2v-1.3b" and saved["steps"] == STEPS and len(saved["ratios"]) == 2 * STEPS
    want = [1.0, 1.0]
    for t in range(1, STEPS):
        for b in ("cond", "uncond"):
            now, before = seen[(t, b)], seen[(t - 1, b)]
            want.append(float((now.norm(dim=-1) / before.norm(dim=-1)).mean()))
    diff = np.abs(np.array(saved["ratios"]) - np.array(want))
    assert diff.max() < 2e-5, (diff.argmax(), saved["ratios"], want)
    again = MagCacheSettings(threshold=0.2, ratios=load_calibration(path))
    assert run(t2v, SamplerSettings(steps=3, cfg=1.0, cache=again)).shape == (1, *SHAPE)  # resampled to 3
    assert not list(path.parent.glob("*.tmp"))


def test_published_curves_and_auto_choice(t2v):
    ratios = magcache_ratios("auto", "wan2.2-i2v-a14b")[1]
    assert len(ratios) == 80 and ratios[0] == ratios[1] == 1.0
    with pytest.raises(InputError, match="calibrate"):
        magcache_ratios("auto", "wan2.1-flf2v-14b")
    with pytest.raises(InputError, match="Unknown TeaCache coefficients"):
        run(t2v, SamplerSettings(steps=2, cfg=1.0, cache=TeaCacheSettings(coefficients="nope")))


def test_settings_round_trip_and_validation():
    from dataclasses import asdict

    for s in (EasyCacheSettings(0.1, mode="paper"), MagCacheSettings(ratios=(1.0, 1.0)), TeaCacheSettings()):
        assert cache_from_dict(asdict(s)) == s
    with pytest.raises(InputError):
        EasyCacheSettings(reuse_threshold=-1)
    with pytest.raises(InputError):
        MagCacheSettings(ratios=(1.0,))
    with pytest.raises(InputError):
        cache_from_dict({"method": "fastcache"})


def test_block_caches_need_our_dit():
    class Fake(torch.nn.Module):  # a DiTLike that is not wan_core's WanDiT
        config = SimpleNamespace(task="t2v", family="wan2.1", out_dim=SHAPE[0], patch_size=(1, 2, 2))
        device = torch.device("cpu")
        dtype = torch.float32

        def forward(self, x, t, context, **kw):
            return x

    with pytest.raises(InputError, match="EasyCache"):
        run(Fake(), SamplerSettings(steps=2, cfg=1.0, cache=MagCacheSettings()))
    assert math.isfinite(float(run(Fake(), SamplerSettings(steps=2, cfg=1.0, cache=EasyCacheSettings())).sum()))
