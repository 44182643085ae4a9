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
