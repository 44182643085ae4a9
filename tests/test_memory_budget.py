"""Memory estimates (wan_core.budget) against measured peaks, block-swap plans, swap-count changes.

The peaks are measured with tests/memory_probe.py under FakeTensorMode: the released model
sizes at real resolutions, without allocating anything. Attention is replaced by an
output-sized stand-in, as flash / memory-efficient kernels hold no score matrix (the CPU's
math kernel would). An estimate must cover the measured peak and stay within 40% above it.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from memory_probe import PeakTracker
from torch._subclasses.fake_tensor import FakeTensorMode

from wan_core.budget import (
    dit_run_bytes,
    plan_block_swap,
    stored_bytes,
    text_run_bytes,
    vae_run_bytes,
)
from wan_core.dit.config import released_config
from wan_core.dit.model import WanDiT
from wan_core.tiny_models import TINY
from wan_core.vae.model import WanVAE
from wan_core.vae.tiny import tiny_vae_config

RELEASED_VAE_SIZES = dataclasses.replace(TINY, vae21_base_dim=96, vae22_base_dim=160, vae22_decoder_dim=256)


def _within(estimate: int, measured: int) -> None:
    assert measured <= estimate <= 1.4 * measured, f"estimate {estimate / 2**30:.3f} GiB vs {measured / 2**30:.3f}"


def _built_in(dtype: torch.dtype, make):
    """``make()`` with ``dtype`` as torch's default dtype (the released weights' dtype), restored afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return make()
    finally:
        torch.set_default_dtype(previous)


def _dit_peak(variant: str, latent: tuple[int, int, int], batch: int, dtype: torch.dtype, monkeypatch) -> int:
    import wan_core.dit.blocks as blocks

    monkeypatch.setattr(blocks, "attention", lambda q, k, v, backend: torch.empty_like(q))
    config = released_config(variant)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = _built_in(dtype, lambda: WanDiT(config, device="cpu"))
        model.compute_dtype = dtype
        x = torch.randn(batch, config.out_dim, *latent)
        y = torch.randn(batch, config.in_dim - config.out_dim, *latent) if config.in_dim > config.out_dim else None
        clip = torch.randn(batch, config.clip_tokens, config.clip_dim) if config.clip_dim else None
        context = [torch.randn(512, config.text_dim) for _ in range(batch)]
        with PeakTracker([*model.parameters(), *model.buffers(), x, *context]) as probe:
            model(x, torch.full((batch,), 500.0), context, clip_fea=clip, y=y)
    return probe.peak


@pytest.mark.parametrize(
    "variant, latent, batch, dtype",
    [
        ("wan2.1-t2v-14b", (21, 90, 160), 2, torch.bfloat16),  # 1280x720x81, batched guidance
        ("wan2.1-t2v-1.3b", (21, 60, 104), 2, torch.bfloat16),  # 832x480x81
        ("wan2.1-i2v-14b", (21, 60, 104), 1, torch.bfloat16),
        ("wan2.2-ti2v-5b", (31, 44, 80), 1, torch.bfloat16),  # 1280x704x121
        ("wan2.1-t2v-1.3b", (5, 30, 52), 1, torch.float32),  # the CPU's compute dtype
    ],
)
def test_dit_estimate_covers_the_measured_peak(variant, latent, batch, dtype, monkeypatch):
    measured = _dit_peak(variant, latent, batch, dtype, monkeypatch)
    estimate = dit_run_bytes(released_config(variant), (16, *latent), batch, dtype)
    _within(estimate, measured)


@pytest.mark.parametrize("version, frames, height, width", [("2.1", 81, 720, 1280), ("2.2", 41, 704, 1280)])
def test_vae_estimate_covers_the_measured_decode_peak(version, frames, height, width):
    config = tiny_vae_config(version, RELEASED_VAE_SIZES)
    s = config.spatial_stride
    with FakeTensorMode(allow_non_fake_inputs=True):
        vae = _built_in(torch.bfloat16, lambda: WanVAE(config))
        z = torch.randn(1, config.z_dim, (frames - 1) // 4 + 1, height // s, width // s)
        with PeakTracker([*vae.parameters(), *vae.buffers(), z]) as probe:
            vae.decode(z)
    _within(vae_run_bytes(config, frames, height, width, torch.bfloat16), probe.peak)


def test_text_estimate_covers_the_measured_peak():
    from wan_core.text.t5 import T5Config, UMT5Encoder

    config = T5Config(d_model=4096, layers=2, heads=64, d_kv=64, d_ff=10240, vocab=256384)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = _built_in(torch.bfloat16, lambda: UMT5Encoder(config))
        ids = torch.zeros(2, 512, dtype=torch.long)
        with PeakTracker([*model.parameters(), ids]) as probe:
            model(ids, torch.ones_like(ids), torch.bfloat16)
    _within(text_run_bytes(config, 2, 512, torch.bfloat16), probe.peak)


def test_stored_bytes_count_quantised_weights_as_stored(tmp_path):
    from wan_core.dit.loader import load_dit
    from wan_core.dit.tiny import tiny_dit_state_dict

    sd = tiny_dit_state_dict("wan2.1-t2v", seed=1)
    dense = load_dit(sd, device="cpu", dtype="bf16")
    int8 = load_dit(sd, device="cpu", dtype="int8")
    fp8 = load_dit(sd, device="cpu", dtype="fp8_e4m3fn")
    block = sum(p.numel() for n, p in dense.blocks.named_parameters() if n.endswith("weight") and p.dim() == 2)
    # block Linear weights: 2 bytes each in bf16, 1 byte (+ fp32 scales) in int8 / fp8
    assert stored_bytes(dense.blocks) - stored_bytes(int8.blocks) >= block * 0.95
    assert stored_bytes(dense.blocks) - stored_bytes(fp8.blocks) >= block * 0.95


def test_block_swap_plan():
    fixed, blocks = 100, [10] * 8
    assert plan_block_swap(fixed, blocks, 180).swapped == 0  # fits whole
    plan = plan_block_swap(fixed, blocks, 150)
    # fewest swapped with resident + 2 blocks in flight <= budget: 3 swapped -> 100 + 50 + 20 = 170 > 150; 5 -> 150
    assert (plan.swapped, plan.resident, plan.in_flight, plan.peak) == (5, 130, 20, 150)
    assert plan_block_swap(fixed, blocks, 10).swapped == 8  # never fits: everything streams
    assert plan_block_swap(fixed, blocks, 1e9, override=3).swapped == 3  # a user's count wins
    assert plan_block_swap(fixed, blocks, 0, override=99).swapped == 8


def test_changing_the_swap_count_keeps_output_and_placement():
    from wan_core.dit.loader import load_dit
    from wan_core.dit.tiny import tiny_dit_state_dict

    model = load_dit(tiny_dit_state_dict("wan2.1-t2v", seed=2, sizes=dataclasses.replace(TINY, dit_layers=4)))
    x = torch.randn(1, 16, 2, 4, 4)
    context = [torch.randn(7, TINY.text_dim)]
    reference = model(x, torch.tensor([500.0]), context)
    for n in (3, 1, 4, 0):
        model.set_block_swap(n, "cpu")
        assert (len(model.block_swap.indices) if model.block_swap else 0) == n
        assert torch.equal(model(x, torch.tensor([500.0]), context), reference)
