"""Schedules and timesteps against the official values (WAN_SPEC 7.2) and per-task defaults (7.5)."""

from __future__ import annotations

import pytest
import torch

from wan_core.configs import (
    FLF2V_NEGATIVE_PROMPT,
    I2V_NEGATIVE_PROMPT,
    NEGATIVE_PROMPT,
    default_negative_prompt,
    defaults_for,
)
from wan_core.errors import InputError
from wan_core.sampling import SamplerSettings, build_schedule, shift_sigmas


def timesteps(steps, shift, solver="unipc"):
    return build_schedule(SamplerSettings(steps=steps, shift=shift, solver=solver)).timesteps.tolist()


def test_unipc_50_shift5_official_values():
    sched = build_schedule(SamplerSettings(steps=50, shift=5.0))
    t = sched.timesteps
    assert t.dtype == torch.int64 and len(t) == 50
    assert t[:5].tolist() == [999, 995, 991, 987, 982]
    assert t[-3:].tolist() == [241, 172, 92]
    assert abs(float(sched.sigmas[0]) - 0.99979985) < 1e-7
    assert sched.sigmas.dtype == torch.float32 and sched.sigmas.shape == (51,) and float(sched.sigmas[-1]) == 0.0


def test_dpmpp_50_shift5_starts_at_1000():
    t = timesteps(50, 5.0, "dpm++")
    assert t[:5] == [1000, 995, 991, 987, 982] and t[-3:] == [241, 172, 92] and len(t) == 50


def test_unipc_40_shift3():
    t = timesteps(40, 3.0)
    assert t[:5] == [999, 991, 982, 973, 963] and t[-3:] == [195, 136, 71]


def test_unipc_40_shift12_a14b_t2v():
    t = timesteps(40, 12.0)
    assert t[:20] == [
        999,
        997,
        995,
        993,
        990,
        988,
        985,
        982,
        979,
        976,
        972,
        969,
        965,
        961,
        956,
        952,
        947,
        941,
        936,
        929,
    ]
    assert sum(v >= 875 for v in t) == 26


def test_unipc_40_shift5_a14b_i2v():
    t = timesteps(40, 5.0)
    assert t[:16] == [999, 994, 989, 983, 978, 972, 965, 959, 952, 944, 937, 929, 920, 911, 902, 892]
    assert sum(v >= 900 for v in t) == 15


def test_float_mode_feeds_1000_sigma():
    sched = build_schedule(SamplerSettings(steps=50, shift=5.0, timestep_mode="float"))
    assert sched.timesteps.dtype == torch.float32
    assert torch.allclose(sched.timesteps, sched.sigmas[:-1] * 1000)
    assert 999.0 < float(sched.timesteps[0]) < 1000.0


def test_shift_formula_and_denoise_truncation():
    full = build_schedule(SamplerSettings(steps=20, shift=3.0))
    part = build_schedule(SamplerSettings(steps=10, shift=3.0, denoise=0.5))
    assert part.steps == 10 and torch.equal(part.sigmas, full.sigmas[10:])
    assert torch.equal(part.timesteps, full.timesteps[10:])
    one = build_schedule(SamplerSettings(steps=1, shift=3.0, solver="euler"))
    assert float(one.sigmas[0]) == 1.0  # the shift keeps σ = 1 at 1
    assert abs(shift_sigmas(0.3, 3.0) - 0.9 / 1.6) < 1e-12  # 3·0.3 / (1 + 2·0.3)


def test_user_sigmas_override_and_validation():
    sched = build_schedule(SamplerSettings(sigmas=[1.0, 0.7, 0.25, 0.0]))
    assert sched.timesteps.tolist() == [1000, 700, 250] and sched.steps == 3
    with pytest.raises(InputError, match="sigma 0 = 0.2 is followed by 0.5"):
        build_schedule(SamplerSettings(sigmas=[0.2, 0.5, 0.0]))
    with pytest.raises(InputError, match="only the last sigma may be 0"):
        build_schedule(SamplerSettings(sigmas=[1.0, 0.0, 0.0]))
    with pytest.raises(InputError):
        build_schedule(SamplerSettings(sigmas=[14.6, 3.0, 0.0]))
    with pytest.raises(InputError):
        SamplerSettings(solver="ddim")


@pytest.mark.parametrize(
    "family,task,size,expect",
    [
        ("wan2.1", "t2v", "1.3b", (50, 5.0, 5.0, 81, 16, 832, 480)),
        ("wan2.1", "t2v", "14b", (50, 5.0, 5.0, 81, 16, 1280, 720)),
        ("wan2.1", "i2v", "720p", (40, 5.0, 5.0, 81, 16, 1280, 720)),
        ("wan2.1", "i2v", "480p", (40, 3.0, 5.0, 81, 16, 832, 480)),
        ("wan2.1", "flf2v", None, (50, 16.0, 5.0, 81, 16, 1280, 720)),
        ("wan2.1", "vace", "1.3b", (50, 16.0, 5.0, 81, 16, 832, 480)),
        ("wan2.2", "t2v", "14b", (40, 12.0, (3.0, 4.0), 81, 16, 1280, 720)),
        ("wan2.2", "i2v", None, (40, 5.0, (3.5, 3.5), 81, 16, 1280, 720)),
        ("wan2.2", "ti2v", "5b", (50, 5.0, 5.0, 121, 24, 1280, 704)),
    ],
)
def test_task_defaults_table(family, task, size, expect):
    d = defaults_for(family, task, size)
    assert (d.steps, d.shift, d.cfg, d.frames, d.fps, d.width, d.height) == expect
    assert d.solver == "unipc"


def test_default_negative_prompts():
    assert NEGATIVE_PROMPT.startswith("色调艳丽，过曝，静态，细节模糊不清，字幕，") and NEGATIVE_PROMPT.endswith(
        "倒着走"
    )
    assert default_negative_prompt("wan2.1", "t2v") == NEGATIVE_PROMPT
    assert default_negative_prompt("wan2.1", "i2v") == "镜头晃动，" + NEGATIVE_PROMPT == I2V_NEGATIVE_PROMPT
    assert (
        default_negative_prompt("wan2.1", "flf2v") == "镜头切换，镜头晃动，" + NEGATIVE_PROMPT == FLF2V_NEGATIVE_PROMPT
    )
    assert default_negative_prompt("wan2.2", "i2v") == NEGATIVE_PROMPT
    assert default_negative_prompt("wan2.2", "ti2v") == NEGATIVE_PROMPT
    with pytest.raises(InputError):
        defaults_for("wan3", "t2v")
