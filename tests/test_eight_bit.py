"""The opt-in 8-bit path: our INT8/FP8 attention kernel, FP8 row quantisation and FP8 GEMMs.

On the CPU the Triton kernels run in Triton's interpreter (conftest sets TRITON_INTERPRET=1
when there is no GPU; needs the ``triton`` package). The interpreter rounds to FP8 by
truncation where the GPU rounds to nearest, so FP8 tolerances here are looser than in
tests/test_gpu.py, which runs the compiled kernels on an H200.
"""

import dataclasses
import os

import pytest
import torch

import wan_core
from wan_core import kernels
from wan_core.dit import fused
from wan_core.dit.attention import sdpa
from wan_core.dit.blocks import modulate
from wan_core.dit.tiny import tiny_dit_state_dict
from wan_core.errors import BackendUnavailableError
from wan_core.kernels import fp8_linear, int8_attention
from wan_core.ops import WanLinear


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.fixture
def interpreted(monkeypatch):
    """Run our Triton kernels on CPU tensors (interpreter), as the GPU would run them compiled."""
    if kernels.triton is None:
        pytest.skip("Triton is not installed here (pip install triton==3.6.0 runs the kernels interpreted on CPU)")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: tests/test_gpu.py runs these kernels compiled")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("TRITON_INTERPRET is not 1: Triton kernels cannot run on the CPU")
    monkeypatch.setattr(kernels, "usable", lambda x: True)
    monkeypatch.setattr(fp8_linear, "usable", lambda x: True)
    monkeypatch.setattr(fused, "enabled", lambda x, out_dtype: True)


@pytest.fixture
def fp8_device() -> torch.device:
    """Where torch's row-wise-scaled FP8 GEMM runs: an FP8 GPU, else the CPU when this torch has it there."""
    if torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9):
        return torch.device("cuda")
    a = torch.ones(2, 16).to(torch.float8_e4m3fn)
    b = torch.ones(16, 16).to(torch.float8_e4m3fn).t()
    try:
        torch._scaled_mm(a, b, torch.ones(2, 1), torch.ones(1, 16), out_dtype=torch.bfloat16)
    except RuntimeError as error:
        pytest.skip(
            f"this torch {torch.__version__} has no row-wise-scaled FP8 GEMM on this device ({error}); "
            "an FP8 GPU (sm89+) or torch >= 2.13 on the CPU runs this test"
        )
    return torch.device("cpu")


def _qkv(sq=130, sk=77, heads=2):
    q = torch.randn(1, sq, heads, 128).to(torch.bfloat16)
    k = (torch.randn(1, sk, heads, 128) + 0.5).to(torch.bfloat16)  # an offset: K smoothing must remove it
    v = torch.randn(1, sk, heads, 128).to(torch.bfloat16)
    return q, k, v


@pytest.mark.parametrize("pv, tol", [("fp8", 0.12), ("fp16", 0.03)])
def test_int8_attention_matches_sdpa(interpreted, pv, tol):
    q, k, v = _qkv()
    want = sdpa(q.float(), k.float(), v.float())
    got = int8_attention.int8_attention(q, k, v, pv=pv)
    assert got.shape == q.shape and got.dtype == torch.bfloat16
    assert _rel(got, want) < tol


@pytest.mark.parametrize("gelu", [False, True])
def test_quantize_rows_kernel_equals_eager(interpreted, gelu):
    x = (torch.randn(5, 1500) * torch.linspace(0.1, 4, 5)[:, None]).to(torch.bfloat16)
    got, want = fp8_linear.quantize_rows(x, gelu), fp8_linear.quantize_rows_eager(x, gelu)
    torch.testing.assert_close(got.scale, want.scale)
    ref = torch.nn.functional.gelu(x.float(), approximate="tanh") if gelu else x.float()
    assert _rel(got.dequantize(torch.float32), ref) < 0.09  # e4m3: 3 mantissa bits, truncated here


def test_norm_kernels_write_fp8_rows(interpreted):
    x = torch.randn(2, 12, 256) * 2
    shift, scale = torch.randn(1, 1, 256), torch.randn(2, 1, 256) * 0.1
    rows = fused.norm_affine(x, 1 + scale, shift, 1e-6, torch.float8_e4m3fn)
    assert rows.data.dtype == torch.float8_e4m3fn and rows.scale.shape == (2, 12, 1)
    assert _rel(rows.dequantize(torch.float32), modulate(x, shift, scale, 1e-6)) < 0.09
    y = torch.randn(2, 12, 256).to(torch.bfloat16)
    want_x = x + y.float()
    rows = fused.residual_norm_affine(x, y, None, 1 + scale, shift, 1e-6, torch.float8_e4m3fn)
    assert _rel(x, want_x) < 1e-6 and _rel(rows.dequantize(torch.float32), modulate(want_x, shift, scale, 1e-6)) < 0.09


def test_fp8_linear_hook_and_requantisation(fp8_device):
    layer = WanLinear(64, 48).to(fp8_device, torch.bfloat16)
    torch.nn.init.normal_(layer.weight, std=0.1)
    torch.nn.init.normal_(layer.bias, std=0.1)
    x = torch.randn(3, 7, 64).to(fp8_device, torch.bfloat16)
    want = torch.nn.functional.linear(x.float(), layer.weight.float(), layer.bias.float())
    layer.kernel = fp8_linear.Fp8Linear(torch.bfloat16)
    got = layer(x)
    assert got.shape == (3, 7, 48) and got.dtype == torch.bfloat16 and _rel(got, want) < 0.06
    with torch.no_grad():
        layer.weight.mul_(-2)  # a merged LoRA changes the weight in place: the FP8 copy must follow
    assert _rel(layer(x), -2 * want + 3 * layer.bias.float()) < 0.06
    layer.adapters.append(lambda t: torch.ones(*t.shape[:-1], 48, dtype=t.dtype, device=t.device))
    assert _rel(layer(x) - 1, -2 * want + 3 * layer.bias.float()) < 0.06


def test_fp8_linear_uses_fp8_weights_as_stored(fp8_device):
    layer = WanLinear(64, 32).to(fp8_device)
    w = torch.randn(32, 64, device=fp8_device) * 0.1
    layer.weight.data = (w / 0.01).to(torch.float8_e4m3fn)
    layer.set_scale(torch.tensor(0.01, device=fp8_device))
    layer.kernel = fp8_linear.Fp8Linear(torch.bfloat16)
    x = torch.randn(4, 64, device=fp8_device).to(torch.bfloat16)
    want = torch.nn.functional.linear(x.float(), layer.dequantized_weight(torch.float32), layer.bias.float())
    assert _rel(layer(x), want) < 0.06 and layer.kernel.weight is layer.weight


def test_fast_8bit_on_cpu_says_which_path_needs_what():
    dit = wan_core.load_dit(tiny_dit_state_dict("wan2.1-t2v"), device="cpu")
    with pytest.raises(BackendUnavailableError, match="fp8_linear.*NVIDIA GPU"):
        dit.set_fast_8bit(True)
    assert not dit.fast_8bit and dit.blocks[0].self_attn.q.kernel is None


def test_tiny_dit_8bit_forward_close_to_exact(interpreted, monkeypatch):
    from test_dit_helpers import make_inputs

    from wan_core.tiny_models import TINY

    monkeypatch.setattr(fp8_linear, "check_device", lambda device: None)
    one_layer = dataclasses.replace(TINY, dit_layers=1)  # the interpreter runs each program in Python: keep it small
    dit = wan_core.load_dit(tiny_dit_state_dict("wan2.1-t2v", sizes=one_layer), device="cpu")
    dit.set_compute_dtype(torch.bfloat16)
    inputs = make_inputs(dit.config)
    exact = dit(**inputs)
    dit.set_fast_8bit(True)
    assert dit.attention_backend == "auto" and dit.blocks[0].ffn[2].kernel is not None  # attention stays exact
    fp8_gemms = dit(**inputs)
    dit.set_attention("int8")
    fast = dit(**inputs)
    assert 1e-4 < _rel(fp8_gemms, exact) < 0.1
    err = _rel(fast, exact)
    assert 1e-4 < err < 0.15 and _rel(fast, fp8_gemms) > 1e-4, err
    dit.set_fast_8bit(False)
    dit.set_attention("sdpa")
    assert _rel(dit(**inputs), exact) < 1e-6
