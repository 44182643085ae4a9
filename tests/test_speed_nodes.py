"""The speed nodes (EasyCache / MagCache / TeaCache settings, CFG options, custom sigmas) and the sampler's
optional cache / guidance / sigmas inputs and its per-step marks, through the node classes on a tiny DiT."""

from __future__ import annotations

import json

import pytest
import torch

import nodes
import wan_core
from nodes.types import TextEmbeds, WanModelHandle
from wan_core.conditioning import Conditioning
from wan_core.dit.tiny import tiny_dit_state_dict
from wan_core.errors import InputError
from wan_core.sampling import SamplerSettings, build_schedule
from wan_core.sampling.cache import EasyCacheSettings, MagCacheSettings, TeaCacheSettings
from wan_core.sampling.guidance import GuidanceOptions
from wan_core.sampling.schedules import parse_sigmas

NODES = nodes.NODE_CLASS_MAPPINGS


def build(node_id: str, **values):
    cls = NODES[node_id]
    return getattr(cls(), cls.FUNCTION)(**values)[0]


def test_settings_nodes_build_wan_core_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("WAN_CORE_OUTPUT_DIR", str(tmp_path))
    easy = build("WanCoreEasyCache", reuse_threshold=0.1, start_percent=0.2, end_percent=0.9, mode="paper")
    assert easy == EasyCacheSettings(0.1, 0.2, 0.9, "paper")
    tea = build("WanCoreTeaCache", threshold=0.15, embedding="e", coefficients="wan2.1-t2v-14b")
    assert tea == TeaCacheSettings(0.15, "e", "wan2.1-t2v-14b")
    mag = dict(threshold=0.1, K=3, retention=0.25, calibration_file="mine.json")
    assert build("WanCoreMagCache", curve="auto", **mag) == MagCacheSettings(0.1, 3, 0.25)
    calibrate = build("WanCoreMagCache", curve="calibrate", **mag)
    assert calibrate.calibrate == str(tmp_path / "wan_magcache" / "mine.json")
    with pytest.raises(InputError, match="calibrate"):
        build("WanCoreMagCache", curve="file", **mag)  # nothing calibrated yet
    (tmp_path / "wan_magcache" / "mine.json").parent.mkdir()
    (tmp_path / "wan_magcache" / "mine.json").write_text(json.dumps({"ratios": [1.0, 1.0, 0.99, 0.98]}))
    assert build("WanCoreMagCache", curve="file", **mag).ratios == (1.0, 1.0, 0.99, 0.98)
    options = build("WanCoreCFGOptions", cfg_zero_star=True, zero_init_steps=1, cfg_start=0.1, cfg_end=0.8)
    assert options == GuidanceOptions(True, 1, 0.1, 0.8)
    assert build("WanCoreSigmas", sigmas="[1.0, 0.9375; 0.833333 0.625, 0]") == (1.0, 0.9375, 0.833333, 0.625, 0.0)
    with pytest.raises(InputError, match="numbers"):
        build("WanCoreSigmas", sigmas="1.0, half, 0")


def test_lightning_sigmas_are_the_4_step_euler_schedule():
    """lightx2v / Wan2.2-Lightning: 4 steps, shift 5 (or 8) on linspace(1, 0) = our euler grid."""
    for shift, text in ((5.0, "1.0, 0.9375, 0.833333, 0.625, 0.0"), (8.0, "1.0, 0.96, 0.888889, 0.727273, 0.0")):
        grid = build_schedule(SamplerSettings(steps=4, shift=shift, solver="euler")).sigmas
        assert torch.allclose(grid, torch.tensor(parse_sigmas(text)), atol=1e-6)


@pytest.fixture(scope="module")
def tiny():
    return WanModelHandle(high=wan_core.load_dit(tiny_dit_state_dict("wan2.1-t2v"), dtype="fp32"))


def _run_sampler(model, **over):
    g = torch.Generator().manual_seed(0)
    args = dict(
        model=model,
        text_embeds=TextEmbeds([torch.randn(5, 64, generator=g)], [torch.randn(4, 64, generator=g)]),
        conditioning=Conditioning(latent_shape=(16, 2, 8, 8)),
        seed=1,
        steps=5,
        cfg=4.0,
        cfg_low_noise=-1.0,
        shift=5.0,
        solver="euler",
        denoise=1.0,
        moe_boundary=0.0,
        batch_size=1,
    )
    args.update(over)
    with torch.inference_mode():
        return NODES["WanCoreSampler"]().run(**args)


def test_sampler_takes_cache_guidance_and_sigmas_and_reports_marks(tiny):
    plain = _run_sampler(tiny)
    assert plain["ui"] == {"wan_dit_steps": ["RRRRR"]}
    cached = _run_sampler(tiny, cache=MagCacheSettings(threshold=1e9, k=9, retention=0.0))
    assert cached["ui"]["wan_dit_steps"] == ["RCCCC"]
    assert not torch.equal(cached["result"][0]["samples"], plain["result"][0]["samples"])
    zero = _run_sampler(tiny, guidance=GuidanceOptions(zero_init_steps=2))
    assert zero["ui"]["wan_dit_steps"] == ["ZZRRR"]
    custom = _run_sampler(tiny, sigmas=parse_sigmas("1.0, 0.9375, 0.833333, 0.625, 0.0"), steps=30)
    assert custom["ui"]["wan_dit_steps"] == ["RRRR"]  # 4 steps from the list, the steps widget ignored
    same = _run_sampler(tiny, steps=4, shift=5.0)
    assert torch.allclose(custom["result"][0]["samples"], same["result"][0]["samples"], atol=1e-5)
