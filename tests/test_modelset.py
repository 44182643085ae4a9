"""ModelSet: the one pair check, and the nodes and the pipeline building the same sampling run from it."""

from __future__ import annotations

import dataclasses

import pytest

from nodes.loaders import WanModelLoader
from nodes.sampling import sampler_inputs
from wan_core.dit.config import released_config
from wan_core.errors import InputError
from wan_core.modelset import ModelSet, check_pair
from wan_core.pipeline import GenerateInputs, GenerateParams, WanPipeline
from wan_core.sampling.loop import step_plan
from wan_core.sampling.schedules import build_schedule, steps_at_or_above
from wan_core.tiny_build import write_tiny_models

A14B_HIGH = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"
A14B_LOW = "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
I2V_LOW = "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"
VAE21, TE = "wan_2.1_vae.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"


# --------------------------------------------------------------------------- the pair check


def _changed(name: str):
    base = released_config("wan2.1-t2v-14b")
    value = {"task": "i2v", "in_dim": 36, "out_dim": 48, "dim": 3072, "variant": "wan2.1-t2v-1.3b"}[name]
    return base, dataclasses.replace(base, **{name: value})


@pytest.mark.parametrize("field", ["task", "in_dim", "out_dim", "dim", "variant"])
def test_pair_check_rejects_what_either_old_check_rejected(field):
    """The loader node compared task / in_dim / out_dim / dim, the pipeline the variant name."""
    high, low = _changed(field)
    with pytest.raises(InputError, match=f"do not match.*{field}"):
        check_pair(high, low)
    check_pair(high, dataclasses.replace(high))  # an equal config is a valid pair


def test_pair_check_catches_a_mix_the_old_node_check_let_through():
    """Wan2.1 I2V-14B and a Wan2.2 I2V-A14B expert share task and channel counts; only one has CLIP layers."""
    wan21, wan22 = released_config("wan2.1-i2v-14b"), released_config("wan2.2-i2v-a14b")
    assert (wan21.task, wan21.in_dim, wan21.out_dim, wan21.dim) == (wan22.task, wan22.in_dim, wan22.out_dim, wan22.dim)
    with pytest.raises(InputError, match="clip_dim"):
        check_pair(wan21, wan22)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "wan_core_tiny"  # shared with test_pipeline.py / test_cli.py
    names = (A14B_HIGH, A14B_LOW, I2V_LOW, VAE21, TE)
    return root, write_tiny_models(root, names=names, overwrite=False)


def _load_node(monkeypatch, root, high, low):
    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(root))
    out = WanModelLoader().load(high, low, "fp32", "sdpa", 0)
    return out["result"][0], out["ui"]["text"][0]


def _pipeline(files, high, low):
    return WanPipeline.from_files(
        model=files[high], model_low=files[low], vae=files[VAE21], text_encoder=files[TE], device="cpu", dtype="fp32"
    )


def test_both_front_doors_refuse_a_mismatched_pair(monkeypatch, tiny):
    root, files = tiny
    with pytest.raises(InputError, match="do not match"):
        _load_node(monkeypatch, root, A14B_HIGH, I2V_LOW)
    with pytest.raises(InputError, match="do not match"):
        _pipeline(files, A14B_HIGH, I2V_LOW)


# --------------------------------------------------------------------------- node == pipeline

# (node widgets: cfg, cfg_low_noise, moe_boundary) and the same request in the pipeline's terms
SAME_INPUTS = [
    ((4.0, 3.0, 0.0), {"cfg": (3.0, 4.0), "boundary": None}),
    ((4.0, -1.0, 0.9), {"cfg": 4.0, "boundary": 0.9}),
    ((5.0, 1.0, 0.95), {"cfg": (1.0, 5.0), "boundary": 0.95}),
]


@pytest.fixture(scope="module")
def both(tiny):
    root, files = tiny
    with pytest.MonkeyPatch.context() as mp:
        node_set, badge = _load_node(mp, root, A14B_HIGH, A14B_LOW)
    return node_set, badge, _pipeline(files, A14B_HIGH, A14B_LOW)


def test_node_and_pipeline_build_the_same_model_set(both):
    node_set, badge, pipe = both
    pipe_set = pipe.models
    assert isinstance(node_set, ModelSet) and isinstance(pipe_set, ModelSet)
    assert node_set.high.config == pipe_set.high.config and node_set.low.config == pipe_set.low.config
    assert (node_set.variant, node_set.family, node_set.is_pair) == (pipe_set.variant, pipe_set.family, True)
    assert node_set.variant.startswith("wan2.2-t2v") and badge == node_set.describe() == pipe_set.describe()


def _plan(model_set, target, settings):
    """(expert name per step, cfg per step) for the run the front door built."""
    names = {id(model_set.high): "high", id(model_set.low): "low"}
    plan = step_plan(target, build_schedule(settings), settings)
    return [names[id(dit)] for dit, _ in plan], [cfg for _, cfg in plan]


@pytest.mark.parametrize("widgets, request_fields", SAME_INPUTS)
def test_node_and_pipeline_switch_experts_at_the_same_step_with_the_same_guidance(both, widgets, request_fields):
    node_set, _badge, pipe = both
    cfg, cfg_low, boundary = widgets
    steps, shift = 8, 12.0
    node_target, node_settings = sampler_inputs(node_set, 1, steps, cfg, cfg_low, shift, "unipc", 1.0, boundary, 1)
    request = GenerateParams("x", steps=steps, shift=shift, seed=1, frames=5, width=32, height=32, **request_fields)
    _mode, resolved = pipe.resolve(request, GenerateInputs())
    pipe_target, pipe_settings = pipe.sampler_inputs(resolved)

    node_experts, node_cfgs = _plan(node_set, node_target, node_settings)
    pipe_experts, pipe_cfgs = _plan(pipe.models, pipe_target, pipe_settings)
    switch = steps_at_or_above(build_schedule(node_settings), 1000.0 * (boundary or 0.875))
    assert 0 < switch < steps, "the case must switch experts inside the run"
    assert node_experts == pipe_experts == ["high"] * switch + ["low"] * (steps - switch)
    low_cfg = cfg if cfg_low < 0 else cfg_low
    assert node_cfgs == pipe_cfgs == [cfg] * switch + [low_cfg] * (steps - switch)


def test_expert_boundary_is_a_fraction_of_the_timestep_range():
    from types import SimpleNamespace

    from wan_core.sampling import Experts

    i2v = SimpleNamespace(config=SimpleNamespace(task="i2v"))
    assert Experts(high=i2v, low=i2v).switch_timestep() == pytest.approx(900.0)  # official I2V boundary 0.9
    assert Experts(high=i2v, low=i2v, boundary=0.5).switch_timestep() == pytest.approx(500.0)
    with pytest.raises(InputError, match="fraction of the timestep range"):
        Experts(high=i2v, low=i2v, boundary=875.0)  # the old 0..1000 unit is refused, not reinterpreted
