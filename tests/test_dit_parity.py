"""Parity of our DiT with diffusers' WanTransformer3DModel / WanVACETransformer3DModel.

Each tiny variant is written in every file layout, loaded with ``wan_core.load_dit(path)``
and compared in fp32 with diffusers holding the same (for fp8: dequantised) weights.
The ComfyUI-layout rows are the issue's done-criterion (variant detected + parity).
"""

from __future__ import annotations

import pytest
import torch
from conftest import rel_err
from test_dit_helpers import (
    LATENT_TF,
    LAYOUTS,
    cached_reference_output,
    diffusers_reference,
    make_inputs,
    padded_context,
    run_reference,
    write_layout,
)

import wan_core
from wan_core.dit.tiny import tiny_dit_config

TOL = 1e-4
LAYOUT_VARIANTS = ("wan2.1-t2v", "wan2.1-i2v", "wan2.1-flf2v", "wan2.1-vace", "wan2.2-ti2v")
ALL_VARIANTS = (
    "wan2.1-t2v",
    "wan2.1-i2v",
    "wan2.1-flf2v",
    "wan2.1-vace",
    "wan2.1-fun-control",
    "wan2.1-fun-inp",
    "wan2.2-t2v",
    "wan2.2-i2v",
    "wan2.2-ti2v",
)
EXPECTED_VARIANT = {"wan2.1-fun-inp": "wan2.1-i2v", "wan2.2-t2v": "wan2.1-t2v"}


def ours(model, inputs: dict, **extra) -> torch.Tensor:
    return model(**inputs, **extra)


def check_parity(tmp_path, variant: str, layout: str) -> None:
    path, _ = write_layout(tmp_path, variant, layout)
    model = wan_core.load_dit(path, device="cpu")
    config = tiny_dit_config(variant)
    assert model.config == config
    assert model.config.variant == EXPECTED_VARIANT.get(variant, variant)
    got = ours(model, make_inputs(config))
    want = cached_reference_output(variant, layout == "fp8_scaled")
    assert got.dtype == torch.float32 and got.shape == (1, config.out_dim, *LATENT_TF)
    err = rel_err(got, want)
    assert err <= TOL, f"{variant}/{layout}: rel err {err:.2e}"


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_comfyui_file_loads_detects_and_matches_diffusers(tmp_path, variant):
    """The issue's done-criterion: a ComfyUI-layout file of every variant loads, is detected, and matches."""
    check_parity(tmp_path, variant, "comfyui")


@pytest.mark.parametrize("layout", [lay for lay in LAYOUTS if lay != "comfyui"])
@pytest.mark.parametrize("variant", LAYOUT_VARIANTS)
def test_parity_with_diffusers_other_layouts(tmp_path, variant, layout):
    check_parity(tmp_path, variant, layout)


def test_ti2v_per_token_timesteps(tmp_path):
    """Wan2.2 TI2V: first latent frame at t=0, the rest at t (diffusers takes a 2-D timestep)."""
    path, weights = write_layout(tmp_path, "wan2.2-ti2v", "comfyui")
    model = wan_core.load_dit(path, device="cpu")
    config = model.config
    assert config.per_token_timesteps
    inputs = make_inputs(config)
    f, h, w = LATENT_TF
    per_frame = torch.tensor([[0.0] + [731.0] * (f - 1)])
    inputs["t"] = per_frame.repeat_interleave(h // 2 * w // 2, dim=1)
    got = ours(model, inputs)
    want = run_reference(diffusers_reference(config, weights), config, inputs)
    assert rel_err(got, want) <= TOL
    # the per-frame form [B, T] is the same request
    inputs["t"] = per_frame
    assert rel_err(ours(model, inputs), got) <= 1e-6
    # and it differs from a uniform timestep (the test can fail)
    inputs["t"] = torch.tensor([731.0])
    assert rel_err(ours(model, inputs), got) > 1e-3


def test_vace_scale_and_two_contexts(tmp_path):
    """Two VACE contexts with their own scales = main pass + s1*hints(ctx1) + s2*hints(ctx2)."""
    path, weights = write_layout(tmp_path, "wan2.1-vace", "comfyui")
    model = wan_core.load_dit(path, device="cpu")
    config = model.config
    ref = diffusers_reference(config, weights)
    inputs = make_inputs(config)
    second = torch.randn_like(inputs["vace_context"])
    # single context with a scale
    got = ours(model, inputs, vace_scale=0.6)
    assert rel_err(got, run_reference(ref, config, inputs, vace_scale=0.6)) <= TOL
    # capture diffusers' hints of the second context, then add them inside a run with the first
    hints: list[torch.Tensor] = []
    grab = [b.register_forward_hook(lambda m, a, out: hints.append(out[0])) for b in ref.vace_blocks]
    run_reference(ref, config, {**inputs, "vace_context": second})
    for h in grab:
        h.remove()
    adds = [
        ref.blocks[layer].register_forward_hook(lambda m, a, out, j=j: out + 1.5 * hints[j])
        for j, layer in enumerate(config.vace_layers)
    ]
    want = run_reference(ref, config, inputs, vace_scale=0.6)
    for h in adds:
        h.remove()
    both = ours(model, {**inputs, "vace_context": [inputs["vace_context"], second]}, vace_scale=[0.6, 1.5])
    assert rel_err(both, want) <= TOL
    assert rel_err(both, got) > 1e-3


def test_trimmed_context_equals_zero_padded(tmp_path):
    path, _ = write_layout(tmp_path, "wan2.1-i2v", "official")
    model = wan_core.load_dit(path, device="cpu")
    inputs = make_inputs(model.config)
    trimmed = ours(model, inputs)
    full = ours(model, {**inputs, "context": padded_context(inputs["context"])})
    as_tensor = ours(model, {**inputs, "context": inputs["context"][0][None]})
    assert rel_err(trimmed, full) <= 1e-6 and rel_err(as_tensor, full) <= 1e-6


def test_batch_matches_single_samples_and_broadcasts(tmp_path):
    """B=2 (different t and prompts) equals two B=1 runs; batch-1 clip_fea / y broadcast."""
    path, _ = write_layout(tmp_path, "wan2.1-i2v", "official")
    model = wan_core.load_dit(path, device="cpu")
    inputs = make_inputs(model.config, batch=2)
    inputs["clip_fea"] = inputs["clip_fea"][:1]
    inputs["y"] = inputs["y"][:1]
    both = ours(model, inputs)
    for i in range(2):
        single = {**inputs, "x": inputs["x"][i : i + 1], "t": inputs["t"][i : i + 1], "context": [inputs["context"][i]]}
        assert rel_err(both[i : i + 1], ours(model, single)) <= 1e-5


def test_output_depends_on_every_input(tmp_path):
    path, _ = write_layout(tmp_path, "wan2.1-flf2v", "official")
    model = wan_core.load_dit(path, device="cpu")
    inputs = make_inputs(model.config)
    base = ours(model, inputs)
    for name in ("x", "t", "clip_fea", "y"):
        changed = dict(inputs)
        changed[name] = inputs[name] + 0.5 * torch.randn_like(inputs[name]) if name != "t" else inputs["t"] * 0.5
        assert rel_err(ours(model, changed), base) > 1e-3, name
    changed = {**inputs, "context": [c + 0.5 * torch.randn_like(c) for c in inputs["context"]]}
    assert rel_err(ours(model, changed), base) > 1e-3


def test_int64_timesteps_and_long_context(tmp_path, caplog):
    """int64 t (official sampler) equals the same float t; >512 text tokens are truncated with a warning."""
    model = wan_core.load_dit(write_layout(tmp_path, "wan2.1-t2v", "official")[0], device="cpu")
    inputs = make_inputs(model.config)
    inputs["t"] = torch.tensor([917])
    as_int = ours(model, inputs)
    assert rel_err(as_int, ours(model, {**inputs, "t": torch.tensor([917.0])})) == 0.0
    assert rel_err(as_int, ours(model, {**inputs, "t": 917.0})) == 0.0
    long = torch.randn(600, model.config.text_dim)
    with caplog.at_level("WARNING"):
        truncated = ours(model, {**inputs, "context": [long]})
    assert "truncating" in caplog.text
    assert rel_err(truncated, ours(model, {**inputs, "context": [long[:512]]})) == 0.0
