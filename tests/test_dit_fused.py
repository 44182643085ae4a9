"""Fused Triton kernels of the DiT equal the eager path (GPU only; CPU CI skips with the reason)."""

import pytest
import torch

from wan_core.dit import fused
from wan_core.dit.blocks import WanRMSNorm, affine_input, modulate
from wan_core.dit.rope import RopeCache, apply_rope

needs_gpu = pytest.mark.skipif(
    fused.triton is None or not torch.cuda.is_available(),
    reason="fused kernels need CUDA + Triton (this machine has neither); run on a GPU to cover them",
)


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@needs_gpu
@pytest.mark.parametrize("per_token", [False, True])
def test_norm_affine_matches_eager(per_token):
    x = torch.randn(2, 300, 1536, device="cuda") * 3 + 1
    shape = (2, 300, 1536) if per_token else (2, 1, 1536)
    shift, scale = torch.randn(shape, device="cuda"), torch.randn(shape, device="cuda") * 0.1
    got = fused.norm_affine(x, 1 + scale, shift, 1e-6, torch.bfloat16)
    ref = modulate(x, shift, scale, 1e-6)
    assert got.dtype == torch.bfloat16 and _rel(got, ref) < 4e-3  # bf16 rounding of the output only
    norm = torch.nn.LayerNorm(1536, device="cuda")
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    ref = torch.nn.functional.layer_norm(x, (1536,), norm.weight, norm.bias, norm.eps)
    assert _rel(affine_input(x, norm, torch.bfloat16), ref) < 4e-3


@needs_gpu
@pytest.mark.parametrize("rope", [True, False])
def test_rms_norm_rope_matches_eager(rope):
    heads, grid = 12, (3, 6, 10)
    x = torch.randn(2, 180, heads * 128, device="cuda", dtype=torch.bfloat16)
    norm = WanRMSNorm(heads * 128, 1e-6, device="cuda")
    torch.nn.init.normal_(norm.weight)
    factors = RopeCache(128).get(grid, torch.device("cuda")) if rope else None
    got = fused.rms_norm_rope(x, norm.weight, 1e-6, factors, 128).unflatten(-1, (heads, -1))
    ref = norm(x).unflatten(-1, (heads, -1))
    ref = apply_rope(ref, factors) if rope else ref
    assert _rel(got, ref) < 4e-3
