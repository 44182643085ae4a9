"""INT8 weight storage: per-channel quantisation at load, dequant and torch._int_mm paths, error bounds."""

import pytest
import torch
from conftest import rel_err
from test_dit_helpers import cached_tiny, make_inputs, write_layout

import wan_core
from wan_core.devices import resolve_dtype
from wan_core.quant import set_matmul
from wan_core.quant.int8 import can_int_mm, int_mm_linear, quantize_int8

INT8_BOUND = 2e-2


def test_quantize_int8_is_per_channel_symmetric():
    w = torch.randn(16, 64) * torch.linspace(0.01, 10, 16).unsqueeze(1)  # rows of very different size
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and scale.shape == (16,) and q.abs().max() == 127
    assert torch.allclose(scale, w.abs().amax(1) / 127)
    err = (q.float() * scale.unsqueeze(1) - w).abs()
    assert bool((err <= scale.unsqueeze(1) / 2 + 1e-6).all())  # at most half a step, per row


@pytest.mark.parametrize("variant", ["wan2.1-t2v", "wan2.1-i2v", "wan2.1-vace", "wan2.2-ti2v"])
@pytest.mark.parametrize("matmul", ["dequant", "int_mm"])
def test_int8_forward_rel_err_is_bounded(variant, matmul):
    sd = cached_tiny(variant)
    ref = wan_core.load_dit(sd, device="cpu")
    model = wan_core.load_dit(sd, device="cpu", dtype="int8")
    q = model.blocks[0].ffn[0]
    assert q.weight.dtype == torch.int8 and q.scale_weight.shape == (q.out_features,)
    assert model.text_embedding[0].weight.dtype == torch.float32  # outside the blocks: compute dtype
    assert model.dtype == torch.float32
    set_matmul(model, matmul)
    inputs = make_inputs(model.config)
    err = rel_err(model(**inputs), ref(**inputs))
    print(f"{variant} int8 ({matmul}) vs fp32 rel err {err:.2e}")
    assert 0 < err <= INT8_BOUND


def test_int_mm_path_is_taken_and_differs_from_dequant(monkeypatch):
    model = wan_core.load_dit(cached_tiny("wan2.1-t2v"), device="cpu", dtype="int8")
    inputs = make_inputs(model.config)
    dequant = model(**inputs)
    calls = []
    real = torch._int_mm
    monkeypatch.setattr(torch, "_int_mm", lambda a, b: calls.append(a.shape) or real(a, b))
    set_matmul(model, "int_mm")
    int_mm = model(**inputs)
    tokens = 3 * 2 * 3  # LATENT_TF (3, 4, 6) with 2x2 patches; cross-attention k/v see the 512 padded text tokens
    assert {shape[0] for shape in calls} == {tokens, model.config.text_len}
    assert not torch.equal(int_mm, dequant) and rel_err(int_mm, dequant) < INT8_BOUND


def test_int_mm_linear_matches_the_dequantised_matmul_and_falls_back_when_it_must():
    gen = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(2, 40, 64, generator=gen), torch.randn(48, 64, generator=gen), torch.randn(48)
    q, scale = quantize_int8(w)
    exact = torch.nn.functional.linear(x, q.float() * scale.unsqueeze(1), b)
    out = int_mm_linear(x, q, scale, b)
    assert out.shape == (2, 40, 48) and rel_err(out, exact) < 1e-2  # only the activations' rounding differs
    assert int_mm_linear(x[:, :8], q, scale, b) is None  # 16 rows or fewer
    assert not can_int_mm(100, 60, 48) and not can_int_mm(100, 64, 44)


def test_int8_from_fp8_and_bf16_files(tmp_path):
    fp8_path, fp8_weights = write_layout(tmp_path, "wan2.1-t2v", "fp8_scaled")
    from_fp8 = wan_core.load_dit(fp8_path, device="cpu", dtype="int8")
    assert from_fp8.blocks[1].self_attn.o.weight.dtype == torch.int8
    assert from_fp8.blocks[1].self_attn.o.scale_weight.ndim == 1  # int8 per-channel scale, not the fp8 scalar
    inputs = make_inputs(from_fp8.config)
    err = rel_err(from_fp8(**inputs), wan_core.load_dit(fp8_weights, device="cpu")(**inputs))
    print(f"int8 from scaled fp8 vs the fp8 file's values: rel err {err:.2e}")
    assert err <= INT8_BOUND
    bf16 = {k: v.to(torch.bfloat16) for k, v in cached_tiny("wan2.1-t2v").items()}
    from_bf16 = wan_core.load_dit(bf16, device="cpu", dtype=torch.int8)
    err = rel_err(from_bf16(**inputs), wan_core.load_dit(bf16, device="cpu", dtype="fp32")(**inputs))
    assert from_bf16.blocks[0].ffn[2].weight.dtype == torch.int8 and err <= INT8_BOUND


def test_int8_block_swap_keeps_output():
    model = wan_core.load_dit(cached_tiny("wan2.1-t2v"), device="cpu", dtype="int8")
    inputs = make_inputs(model.config)
    before = model(**inputs)
    model.set_block_swap(2, "cpu")
    seen = []
    model.blocks[1].register_forward_pre_hook(lambda m, a: seen.append(m.ffn[0].weight.dtype))
    assert rel_err(model(**inputs), before) == 0.0 and seen == [torch.int8]
    assert model.blocks[1].ffn[0].scale_weight is not None


def test_int8_is_a_dtype_name_for_weight_storage():
    assert resolve_dtype("int8") == torch.int8
    from wan_core.devices import is_storage_dtype

    assert is_storage_dtype(torch.int8) and is_storage_dtype(torch.float8_e4m3fn)
    assert not is_storage_dtype(torch.bfloat16)
