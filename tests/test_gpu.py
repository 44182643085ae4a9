"""CUDA-only paths: DiT block-swap prefetch, device moves, VAE channels-last layout (CPU CI skips with the reason)."""

import pytest
import torch

import wan_core
from wan_core.dit.tiny import tiny_dit_state_dict

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU (CUDA streams, cuDNN layouts); run on a GPU machine to cover it",
)


@needs_cuda
@pytest.mark.parametrize("prefetch", [True, False])
def test_block_swap_with_prefetch_matches_resident_model(prefetch):
    dit = wan_core.load_dit(tiny_dit_state_dict("wan2.1-t2v"), device="cuda", dtype=torch.float32)
    x = torch.randn(2, 16, 3, 8, 8, device="cuda")
    ctx = [torch.randn(7, dit.config.text_dim, device="cuda")]
    t = torch.tensor([700.0, 300.0], device="cuda")
    ref = dit(x, t, ctx)
    dit.set_block_swap(len(dit.blocks), "cpu", prefetch=prefetch)
    assert dit.blocks[1].self_attn.q.weight.device.type == "cpu"
    for _ in range(3):  # repeated forwards reuse the prefetch path
        out = dit(x, t, ctx)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert dit.blocks[1].self_attn.q.weight.device.type == "cpu"
    dit.set_block_swap(0)
    assert dit.blocks[1].self_attn.q.weight.device.type == "cuda"


@needs_cuda
def test_cuda_model_takes_cpu_inputs_and_matches_cpu_model():
    sd = tiny_dit_state_dict("wan2.1-i2v")
    gpu = wan_core.load_dit(sd, device="cuda", dtype=torch.float32)
    cpu = wan_core.load_dit(sd, device="cpu", dtype=torch.float32)
    c = gpu.config
    x, y = torch.randn(1, 16, 2, 4, 4), torch.randn(1, c.extra_channels, 2, 4, 4)
    ctx, clip = [torch.randn(6, c.text_dim)], torch.randn(1, 17, c.clip_dim)  # any token count for I2V
    out = gpu(x, torch.tensor([300.0]), ctx, clip_fea=clip, y=y)  # every input on the CPU
    ref = cpu(x, torch.tensor([300.0]), ctx, clip_fea=clip, y=y)
    assert out.device.type == "cuda"
    assert float((out.cpu().double() - ref.double()).norm() / ref.double().norm()) < 1e-3  # TF32 convs on CUDA


@needs_cuda
def test_vae_channels_last_layout_keeps_results():
    from wan_core.vae.tiny import tiny_vae_state_dict

    sd = tiny_vae_state_dict("2.1")
    gpu = wan_core.load_vae(sd, device="cuda", dtype=torch.float32)
    cpu = wan_core.load_vae(sd, device="cpu", dtype=torch.float32)
    z = torch.randn(1, 16, 3, 4, 6)
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # exact fp32 convolutions, so the layout change is all that differs
    try:
        out = gpu.decode(z)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    conv = next(m for m in gpu.modules() if isinstance(m, torch.nn.Conv3d) and m.kernel_size == (3, 3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    ref = cpu.decode(z)
    assert float((out.cpu().double() - ref.double()).norm() / ref.double().norm()) < 1e-5


# ---------------------------------------------------------------------------------- speed paths


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def _hopper() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9


needs_hopper = pytest.mark.skipif(not _hopper(), reason="needs an NVIDIA GPU of compute capability 9.0+ (H100/H200)")


@needs_hopper
def test_attention_takes_cudnn_on_hopper_after_a_comfyui_style_context():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.profiler import profile

    from wan_core.dit.attention import attention

    q, k, v = (torch.randn(1, 2048, 8, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    with sdpa_kernel(order, set_priority=True):  # what ComfyUI's attention does around every call
        torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    with profile() as prof:
        out = attention(q, k, v, "sdpa")
        torch.cuda.synchronize()
    names = {e.name for e in prof.events()}
    assert "aten::_scaled_dot_product_cudnn_attention" in names, sorted(n for n in names if "scaled_dot" in n)
    ref = torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2).float() for t in (q, k, v)))
    assert _rel(out, ref.transpose(1, 2)) < 1e-2


@needs_cuda
def test_ffn_gelu_epilogue_on_cuda():
    from wan_core.dit import fused
    from wan_core.dit.blocks import FeedForward

    assert fused.epilogue_gelu_is_tanh(torch.device("cuda", torch.cuda.current_device()), torch.bfloat16)
    ffn = FeedForward(1536, 8960, device="cuda")
    for layer in (ffn[0], ffn[2]):
        torch.nn.init.normal_(layer.weight, std=layer.in_features**-0.5)
        torch.nn.init.normal_(layer.bias, std=0.1)
    ffn.to(torch.bfloat16)
    x = torch.randn(1, 1000, 1536, device="cuda", dtype=torch.bfloat16)
    ref = ffn[2](torch.nn.functional.gelu(ffn[0](x).float(), approximate="tanh").to(torch.bfloat16))
    assert _rel(ffn(x), ref) < 1e-2


@needs_cuda
@pytest.mark.parametrize("pv, tol", [("fp8", 5e-2), ("fp16", 2e-2)])
@pytest.mark.parametrize("sq, sk", [(4096, 4096), (1000, 77), (3000, 512)])
def test_int8_attention_kernel_compiled(pv, tol, sq, sk):
    from wan_core.kernels.int8_attention import int8_attention

    if pv == "fp8" and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 products need sm89+")
    q = torch.randn(1, sq, 8, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, sk, 8, 128, device="cuda", dtype=torch.bfloat16) + 0.3
    v = torch.randn(1, sk, 8, 128, device="cuda", dtype=torch.bfloat16)
    ref = torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2).float() for t in (q, k, v)))
    out = int8_attention(q, k, v, pv=pv)
    assert out.isfinite().all() and _rel(out, ref.transpose(1, 2)) < tol


@needs_hopper
def test_fp8_rows_and_gemm_compiled():
    from wan_core.dit import fused
    from wan_core.dit.blocks import modulate
    from wan_core.kernels import fp8_linear
    from wan_core.ops import WanLinear

    x = torch.randn(1, 777, 5120, device="cuda") * 2
    shift, scale = torch.randn(1, 1, 5120, device="cuda"), torch.randn(1, 1, 5120, device="cuda") * 0.1
    rows = fused.norm_affine(x, 1 + scale, shift, 1e-6, torch.float8_e4m3fn)
    want = modulate(x, shift, scale, 1e-6)
    assert _rel(rows.dequantize(torch.float32), want) < 4e-2
    h = torch.randn(777, 13824, device="cuda", dtype=torch.bfloat16)
    got, eager = fp8_linear.quantize_rows(h, gelu=True), fp8_linear.quantize_rows_eager(h, gelu=True)
    torch.testing.assert_close(got.scale, eager.scale, rtol=1e-3, atol=0)
    assert _rel(got.dequantize(torch.float32), eager.dequantize(torch.float32)) < 1e-2
    layer = WanLinear(5120, 5120, device="cuda")
    torch.nn.init.normal_(layer.weight, std=5120**-0.5)
    torch.nn.init.normal_(layer.bias, std=0.1)
    layer.to(torch.bfloat16)
    ref = torch.nn.functional.linear(want.to(torch.bfloat16), layer.weight, layer.bias)
    layer.kernel = fp8_linear.Fp8Linear(torch.bfloat16)
    assert _rel(layer(rows), ref) < 5e-2 and _rel(layer(want.to(torch.bfloat16)), ref) < 5e-2


@needs_hopper
def test_tiny_dit_8bit_compiled_close_to_exact():
    dit = wan_core.load_dit(tiny_dit_state_dict("wan2.1-t2v"), device="cuda")
    x = torch.randn(1, 16, 3, 16, 16, device="cuda")
    ctx, t = [torch.randn(7, dit.config.text_dim, device="cuda")], torch.tensor([700.0], device="cuda")
    exact = dit(x, t, ctx)
    dit.set_fast_8bit(True)
    fp8_gemms = dit(x, t, ctx)
    dit.set_attention("int8")
    fast = dit(x, t, ctx)
    assert 1e-4 < _rel(fp8_gemms, exact) < 0.1 and 1e-4 < _rel(fast, exact) < 0.1


@needs_cuda
def test_vae_fused_norm_silu_compiled_channels_last():
    from wan_core.kernels.norm_silu import rms_norm_silu_into
    from wan_core.vae.blocks import RMSNorm

    norm = RMSNorm(96).cuda()
    torch.nn.init.normal_(norm.gamma, 1.0, 0.3)
    x = torch.randn(1, 96, 4, 60, 104, device="cuda").to(torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    buf = torch.empty(1, 96, 6, 60, 104, device="cuda", dtype=torch.bfloat16)
    buf = buf.contiguous(memory_format=torch.channels_last_3d)
    assert rms_norm_silu_into(x, norm.gamma.to(torch.bfloat16), buf[:, :, 2:])
    assert _rel(buf[:, :, 2:], torch.nn.functional.silu(norm(x.float()))) < 5e-3
