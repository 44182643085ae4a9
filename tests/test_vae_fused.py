"""The VAE's fused RMSNorm + SiLU (Triton; interpreted on CPU) equals the eager ops, in any layout."""

import os

import pytest
import torch
import torch.nn.functional as F

import wan_core
from wan_core import kernels
from wan_core.kernels.norm_silu import rms_norm_silu_into
from wan_core.vae.blocks import ChunkCache, ResidualBlock, RMSNorm
from wan_core.vae.tiny import tiny_vae_state_dict


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture
def device():
    if kernels.triton is None:
        pytest.skip("Triton is not installed here (pip install triton==3.6.0 runs the kernels interpreted on CPU)")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU and TRITON_INTERPRET is not 1: Triton kernels cannot run here")
    return torch.device("cpu")


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_rms_norm_silu_into_a_frame_buffer(device, layout):
    norm = RMSNorm(24).to(device)
    torch.nn.init.normal_(norm.gamma, 1.0, 0.3)
    x = torch.randn(2, 24, 3, 5, 7, device=device).to(torch.bfloat16)
    fmt = torch.channels_last_3d if layout == "channels_last" else torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    buf = torch.full((2, 24, 5, 5, 7), float("nan"), device=device, dtype=torch.bfloat16).contiguous(memory_format=fmt)
    assert rms_norm_silu_into(x, norm.gamma.to(torch.bfloat16), buf[:, :, 2:])
    want = F.silu(norm.float()(x.float()))
    assert _rel(buf[:, :, 2:], want) < 5e-3
    assert buf[:, :, :2].isnan().all()  # nothing outside the view was written


def test_residual_block_chunks_fused_equal_eager(device, monkeypatch):
    torch.manual_seed(0)
    block = ResidualBlock(16, 24).to(device)
    for name, p in block.named_parameters():
        torch.nn.init.normal_(p, 1.0 if "gamma" in name else 0.0, 0.3 if "gamma" in name else 0.1)
    block.to(torch.bfloat16)
    chunks = [torch.randn(1, 16, t, 6, 8, device=device).to(torch.bfloat16) for t in (1, 4, 4)]

    def run(fused: bool):
        monkeypatch.setattr(kernels, "usable", lambda x: fused)
        cache = ChunkCache()
        return torch.cat([block(c, cache) for c in chunks], dim=2)

    eager, fused = run(False), run(True)
    assert _rel(fused, eager) < 1e-2 and _rel(eager, torch.zeros_like(eager) + 1) > 0.1


def test_tiny_vae_decode_fused_equals_eager(device, monkeypatch):
    sd = tiny_vae_state_dict("2.1")
    vae = wan_core.load_vae(sd, device=device, dtype=torch.bfloat16)
    z = torch.randn(1, 16, 2, 2, 4, device=device)
    ref = wan_core.load_vae(sd, device="cpu", dtype=torch.float32).decode(z.cpu())
    monkeypatch.setattr(kernels, "usable", lambda x: False)
    eager = vae.decode(z)
    monkeypatch.setattr(kernels, "usable", lambda x: True)
    fused = vae.decode(z)
    # the fused kernel rounds once (fp32 inside), the eager bf16 ops several times: at least as close to fp32
    assert _rel(fused.cpu(), ref) <= 1.1 * _rel(eager.cpu(), ref) + 1e-3 and _rel(fused, eager) < 4e-2
