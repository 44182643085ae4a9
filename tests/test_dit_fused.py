"""Fused kernels of the DiT equal the eager path.

On the CPU the Triton kernels run in Triton's interpreter (``TRITON_INTERPRET=1``; needs the
``triton`` package, a test-only dependency on Linux); on a CUDA GPU they run compiled.
"""

import os

import pytest
import torch

from wan_core.dit import blocks, fused
from wan_core.dit.blocks import WanBlock, WanRMSNorm, modulate
from wan_core.dit.embeddings import split_modulation
from wan_core.dit.rope import RopeCache, apply_rope
from wan_core.ops import WanLinear

needs_gpu = pytest.mark.skipif(
    fused.triton is None or not torch.cuda.is_available(),
    reason="compiled Triton kernels need CUDA + Triton (this machine has no GPU); the CPU tests cover the interpreter",
)


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture
def kernels():
    """The fused module on the best device here: compiled on CUDA, interpreted on the CPU (see conftest)."""
    if fused.triton is None:
        pytest.skip("Triton is not installed here (pip install triton==3.6.0 runs the kernels interpreted on CPU)")
    if torch.cuda.is_available():
        return fused, torch.device("cuda")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU and TRITON_INTERPRET is not 1: Triton kernels cannot run here")
    return fused, torch.device("cpu")


@pytest.mark.parametrize("per_token", [False, True])
def test_norm_affine_matches_eager(kernels, per_token):
    k, dev = kernels
    x = torch.randn(2, 12, 256, device=dev) * 3 + 1
    shape = (2, 12, 256) if per_token else (2, 1, 256)
    shift, scale = torch.randn(shape, device=dev), torch.randn(shape, device=dev) * 0.1
    got = k.norm_affine(x, 1 + scale, shift, 1e-6, torch.bfloat16)
    assert got.dtype == torch.bfloat16 and _rel(got, modulate(x, shift, scale, 1e-6)) < 4e-3
    norm = torch.nn.LayerNorm(256, device=dev)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    ref = torch.nn.functional.layer_norm(x, (256,), norm.weight, norm.bias, norm.eps)
    assert _rel(k.norm_affine(x, norm.weight, norm.bias, norm.eps, torch.bfloat16), ref) < 4e-3


@pytest.mark.parametrize("gate", ["none", "broadcast", "per_token"])
def test_residual_norm_affine_matches_eager(kernels, gate):
    k, dev = kernels
    x = torch.randn(2, 12, 256, device=dev) * 2
    y = torch.randn(2, 12, 256, device=dev).to(torch.bfloat16)
    g = {
        "none": None,
        "broadcast": torch.randn(2, 1, 256, device=dev),
        "per_token": torch.randn(2, 12, 256, device=dev),
    }
    g = g[gate]
    shift, scale = torch.randn(1, 1, 256, device=dev), torch.randn(2, 1, 256, device=dev) * 0.1
    want_x = x + y.float() * (1 if g is None else g)
    want = modulate(want_x, shift, scale, 1e-6)
    got = k.residual_norm_affine(x, y, g, 1 + scale, shift, 1e-6, torch.bfloat16)
    assert _rel(x, want_x) < 1e-6  # the stream was updated in place, in fp32
    assert got.dtype == torch.bfloat16 and _rel(got, want) < 4e-3


@pytest.mark.parametrize("rope", [True, False])
def test_rms_norm_rope_matches_eager(kernels, rope):
    k, dev = kernels
    heads, grid = 2, (2, 2, 3)
    x = torch.randn(2, 12, heads * 128, device=dev, dtype=torch.bfloat16)
    norm = WanRMSNorm(heads * 128, 1e-6, device=dev)
    torch.nn.init.normal_(norm.weight)
    factors = RopeCache(128).get(grid, dev) if rope else None
    got = k.rms_norm_rope(x, norm.weight, 1e-6, factors, 128).unflatten(-1, (heads, -1))
    ref = norm(x).unflatten(-1, (heads, -1))
    ref = apply_rope(ref, factors) if rope else ref
    assert _rel(got, ref) < 4e-3


def _linear(n_in, n_out, dtype=torch.float32):
    layer = WanLinear(n_in, n_out)
    torch.nn.init.normal_(layer.weight, std=n_in**-0.5)
    torch.nn.init.normal_(layer.bias, std=0.1)
    return layer.to(dtype)


def test_gelu_epilogue_probe_reads_the_kernel():
    """PyTorch's CPU _addmm_activation uses the erf GELU, so the CPU never takes the epilogue for Wan's tanh GELU."""
    assert fused.epilogue_gelu_is_tanh(torch.device("cpu"), torch.float32) is False
    layer, x = _linear(64, 96), torch.randn(2, 5, 64)
    want = torch.nn.functional.gelu(layer(x), approximate="tanh")
    assert torch.equal(fused.linear_gelu(layer, x, epilogue=True), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_gelu_epilogue_wiring(dtype, monkeypatch):
    """With the epilogue taken (forced here), shapes, bias and weight layout match linear + GELU."""
    monkeypatch.setattr(fused, "epilogue_gelu_is_tanh", lambda device, dtype: True)
    calls = []
    real = torch._addmm_activation
    monkeypatch.setattr(torch, "_addmm_activation", lambda *a, **k: calls.append(1) or real(*a, **k))
    layer, x = _linear(64, 96, dtype), torch.randn(2, 5, 64).to(dtype)
    want = torch.nn.functional.gelu(layer(x), approximate="tanh")
    got = fused.linear_gelu(layer, x, epilogue=True)
    assert calls == [1] and got.shape == (2, 5, 96)
    assert _rel(got, want) < 2e-3  # the CPU kernel's erf GELU differs from tanh by < 1e-3
    assert fused.linear_gelu(layer, x) is not None and calls == [1]  # default on CPU: no epilogue
    layer.adapters.append(lambda t: torch.ones(*t.shape[:-1], 96, dtype=t.dtype))  # LoRA at run time: plain path
    assert _rel(fused.linear_gelu(layer, x, epilogue=True), want) > 1e-2 and calls == [1]


def test_block_with_fused_kernels_equals_eager_block(kernels, monkeypatch):
    """A whole bf16 block: fused norms, residual updates, RMSNorm+RoPE and GELU epilogue vs the eager ops."""
    k, dev = kernels
    torch.manual_seed(0)
    block = WanBlock(256, 512, 2, 1e-6, image_kv=False).to(dev)
    for name, p in block.named_parameters():
        torch.nn.init.normal_(p, mean=1.0 if "norm" in name else 0.0, std=0.1 if p.ndim == 1 else 256**-0.5)
    block.modulation.data.mul_(0.5)
    block.to(torch.bfloat16)
    for name in ("norm3", "self_attn.norm_q", "self_attn.norm_k", "cross_attn.norm_q", "cross_attn.norm_k"):
        block.get_submodule(name).float()
    block.modulation.data = block.modulation.data.float()
    grid, x = (2, 2, 3), torch.randn(1, 12, 256, device=dev)
    e0 = torch.randn(1, 1, 6, 256, device=dev) * 0.1
    ctx = blocks.Context(torch.randn(1, 16, 256, device=dev).to(torch.bfloat16))
    rope = RopeCache(128).get(grid, dev)
    monkeypatch.setattr(blocks, "fused", k)
    monkeypatch.setattr(k, "enabled", lambda t, out_dtype: False)
    eager = block(x.clone(), e0, ctx, rope, torch.bfloat16)
    monkeypatch.setattr(k, "enabled", lambda t, out_dtype: out_dtype in (torch.bfloat16, torch.float16))
    if dev.type == "cpu":  # the GELU epilogue runs on CUDA by default; make the CPU take it too
        real = k.linear_gelu
        monkeypatch.setattr(k, "epilogue_gelu_is_tanh", lambda device, dtype: True)
        monkeypatch.setattr(k, "linear_gelu", lambda layer, t: real(layer, t, epilogue=True))
    got = block(x.clone(), e0, ctx, rope, torch.bfloat16)
    assert _rel(got, eager) < 1e-2 and _rel(got, x) > 1e-2
    assert split_modulation(block.modulation, e0)[0].dtype == torch.float32


@needs_gpu
def test_fused_kernels_compiled_on_gpu_at_real_width():
    x = torch.randn(1, 300, 5120, device="cuda")
    y = torch.randn(1, 300, 5120, device="cuda", dtype=torch.bfloat16)
    gate, shift, scale = (torch.randn(1, 1, 5120, device="cuda") * 0.1 for _ in range(3))
    want_x = x + y.float() * gate
    got = fused.residual_norm_affine(x, y, gate, 1 + scale, shift, 1e-6, torch.bfloat16)
    assert _rel(x, want_x) < 1e-6 and _rel(got, modulate(want_x, shift, scale, 1e-6)) < 4e-3
