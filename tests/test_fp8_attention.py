"""flash-attn 3 in our attention: the ``fp8`` backend's per-head quantisation, and ``auto``'s fallback.

The quantisation runs everywhere (Triton interpreter on the CPU, compiled on a GPU); the FP8
kernel itself needs flash-attn 3 on a Hopper GPU and skips with the reason elsewhere.
"""

import os

import pytest
import torch

from wan_core import kernels
from wan_core.dit import attention as attn
from wan_core.errors import BackendUnavailableError
from wan_core.kernels import fp8_attention


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def _qkv(seq=200, heads=3, dim=64, device="cpu", shift=0.0, v_mean=0.0):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, seq, heads, dim, generator=gen) for _ in range(3))
    k = k + shift * torch.linspace(-1, 1, dim)  # a per-channel offset, as smoothing targets
    v = v + v_mean * torch.randn(dim, generator=gen)  # a mean over tokens, as V has inside the DiT
    return (t.to(device=device, dtype=torch.bfloat16) for t in (q, k, v))


@pytest.mark.parametrize("smooth", [False, True])
def test_eager_quantisation_dequantises_back_within_e4m3_precision(smooth):
    _, k, _ = _qkv(shift=4.0)
    k8, descale, mean = fp8_attention.quantize_heads_eager(k, smooth=smooth)
    assert (mean is not None) == smooth
    assert k8.dtype == torch.float8_e4m3fn and descale.shape == (2, 3)
    back = k8.float() * descale[:, None, :, None]
    if smooth:
        back = back + k.float().mean(dim=1, keepdim=True)
    assert _rel(back, k.float()) < 4e-2  # e4m3 keeps 3 mantissa bits
    assert float((k8.float().abs().amax(dim=(1, 3)) - 448).abs().max()) < 64  # each head's range is used


def test_smoothing_shrinks_the_scale_of_an_offset_k():
    _, k, _ = _qkv(shift=8.0)
    plain = fp8_attention.quantize_heads_eager(k).descale
    smoothed = fp8_attention.quantize_heads_eager(k, smooth=True).descale
    assert bool((smoothed < plain).all())


@pytest.mark.parametrize("smooth", [False, True])
def test_triton_quantisation_equals_the_eager_one(monkeypatch, smooth):
    if kernels.triton is None:
        pytest.skip("Triton is not installed here (pip install triton runs the kernels interpreted on CPU)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        if os.environ.get("TRITON_INTERPRET") != "1":
            pytest.skip("TRITON_INTERPRET is not 1: Triton kernels cannot run on the CPU")
        monkeypatch.setattr(fp8_attention, "usable", lambda x: True)
    _, k, _ = _qkv(seq=150, dim=32, device=device, shift=3.0)
    k = k.transpose(1, 2).contiguous().transpose(1, 2)  # a strided view, as the DiT hands over
    got, got_scale, got_mean = fp8_attention.quantize_heads(k, smooth=smooth)
    want, want_scale, want_mean = fp8_attention.quantize_heads_eager(k, smooth=smooth)
    assert torch.allclose(got_scale, want_scale, rtol=1e-5)
    if smooth:
        assert got_mean is not None and want_mean is not None
        assert torch.allclose(got_mean, want_mean, rtol=1e-5, atol=1e-6)
    # Compiled, the cast rounds as torch does (an atomic-sum mean may move a rare value by one step);
    # Triton's CPU interpreter mis-rounds ~2.5 % of the values to FP8.
    same = float((got.float() == want.float()).float().mean())
    assert same > (0.999 if device == "cuda" else 0.95)


def test_fp8_backend_without_flash_attn_3_says_what_to_install(monkeypatch):
    monkeypatch.setattr(fp8_attention, "flash_attn_3", lambda: None)
    attn._load.cache_clear()
    try:
        with pytest.raises(BackendUnavailableError, match="flash-attn 3.*hopper/ folder.*attention='sdpa'"):
            attn.check_backend("fp8")
        with pytest.raises(BackendUnavailableError, match="not installed.*attention='sdpa'"):
            fp8_attention.check_device(torch.device("cpu"))
    finally:
        attn._load.cache_clear()


def test_fp8_backend_on_a_cpu_names_the_gpu_it_needs(monkeypatch):
    monkeypatch.setattr(fp8_attention, "flash_attn_3", lambda: object())
    with pytest.raises(BackendUnavailableError, match="Hopper GPU .sm_90.*runs on cpu.*attention='sdpa'"):
        fp8_attention.check_device(torch.device("cpu"))


def test_auto_falls_back_to_sdpa_for_shapes_flash_attn_3_refuses(monkeypatch):
    calls = []

    def refusing(q, k, v):
        calls.append(q.shape)
        raise RuntimeError("This flash attention build does not support headdim 64")

    monkeypatch.setattr(attn, "_kernel", lambda name: refusing)
    run = attn._flash_attn_3_or_sdpa()
    q, k, v = _qkv(seq=20)
    for _ in range(2):
        out = run(q, k, v)
        assert _rel(out.float(), attn.sdpa(q, k, v).float()) < 1e-2
    assert len(calls) == 1  # the refusal is remembered for the shape
    attn._refused.pop(attn._shape_key(q, k), None)


def _flash_attn_3_on_hopper() -> str | None:
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9:
        return "needs an NVIDIA Hopper GPU (sm_90)"
    if fp8_attention.flash_attn_3() is None:
        return "needs flash-attn 3 (module flash_attn_interface, built from flash-attention's hopper/ folder)"
    return None


@pytest.mark.skipif(_flash_attn_3_on_hopper() is not None, reason=str(_flash_attn_3_on_hopper()))
@pytest.mark.parametrize("seq", [1000, 4097])
@pytest.mark.parametrize("v_mean", [0.0, 2.0])
def test_fp8_and_auto_attention_against_cudnn_on_hopper(seq, v_mean):
    q, k, v = _qkv(seq=seq, heads=4, dim=128, device="cuda", shift=2.0, v_mean=v_mean)
    ref = attn.attention(q, k, v, "sdpa_cudnn")
    assert attn.resolved("auto", q.device) == "flash_attn_3"
    assert _rel(attn.attention(q, k, v, "auto").float(), ref.float()) < 1e-2
    fp8 = attn.attention(q, k, v, "fp8")
    assert fp8.dtype == q.dtype and fp8.shape == q.shape
    assert _rel(fp8.float(), ref.float()) < 8e-2  # P in e4m3 inside the kernel: ~5e-2 on random data


@pytest.mark.parametrize(
    ("backend", "capability", "installed", "fp8_built", "want"),
    [
        ("auto", (9, 0), True, True, "fp8"),  # Hopper with flash-attn 3: the 8-bit path takes its FP8 kernel
        ("auto", (8, 9), True, True, "auto"),  # flash-attn 3's FP8 kernel is Hopper-only
        ("auto", (9, 0), False, True, "auto"),  # not installed
        ("auto", (9, 0), True, False, "auto"),  # a build without the FP8 kernels
        ("sdpa", (9, 0), True, True, "sdpa"),  # an explicit choice is kept
        ("int8", (9, 0), True, True, "int8"),
    ],
)
def test_eight_bit_path_turns_auto_into_fp8_only_where_it_runs(
    monkeypatch, backend, capability, installed, fp8_built, want
):
    monkeypatch.setattr(fp8_attention, "flash_attn_3", lambda: object() if installed else None)
    monkeypatch.setattr(fp8_attention, "_fp8_forward_runs", lambda device: fp8_built)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert attn.eight_bit_attention(backend, torch.device("cuda")) == want
    assert attn.eight_bit_attention(backend, torch.device("cpu")) == backend


class _FakeFlashAttn3:
    """flash-attn 3's interface as far as the FP8 probe calls it."""

    def __init__(self, error: Exception | None) -> None:
        self.error, self.calls = error, []

    def flash_attn_func(self, q, k, v, **descales):
        self.calls.append((q.dtype, sorted(descales)))
        if self.error is not None:
            raise self.error
        return torch.zeros(q.shape, dtype=torch.bfloat16)


@pytest.mark.parametrize(
    ("error", "works"),
    [
        (None, True),
        (RuntimeError("This flash attention build does not support FP8"), False),
        (TypeError("flash_attn_func() got an unexpected keyword argument 'q_descale'"), False),
    ],
)
def test_the_fp8_probe_calls_the_kernel_once_and_reads_a_refusal(monkeypatch, error, works):
    fake = _FakeFlashAttn3(error)
    monkeypatch.setattr(fp8_attention, "flash_attn_3", lambda: fake)
    probe = fp8_attention._fp8_forward_runs
    probe.cache_clear()
    try:
        assert probe("cpu") is works
        assert probe("cpu") is works
        assert fake.calls == [(torch.float8_e4m3fn, ["k_descale", "q_descale", "v_descale"])]  # once per device
        if not works:
            monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
            monkeypatch.setattr(fp8_attention, "_fp8_forward_runs", lambda device: False)
            with pytest.raises(BackendUnavailableError, match="cannot run its FP8 forward.*attention='auto'"):
                fp8_attention.check_device(torch.device("cuda"))
    finally:
        probe.cache_clear()


def test_the_dit_blocks_run_the_eight_bit_choice_and_return_to_the_chosen_backend(monkeypatch):
    import wan_core
    from wan_core.dit import model as dit_model
    from wan_core.dit.tiny import tiny_dit_state_dict
    from wan_core.kernels import fp8_linear

    monkeypatch.setattr(fp8_linear, "check_device", lambda device: None)
    monkeypatch.setattr(dit_model, "eight_bit_attention", lambda backend, device: f"{backend}->8bit")
    dit = wan_core.load_dit(tiny_dit_state_dict("wan2.1-t2v"), device="cpu", attention="auto")
    dit.set_fast_8bit(True)
    assert dit.attention_backend == "auto" and dit.effective_attention == "auto->8bit"
    assert {block.self_attn.backend for block in dit.blocks} == {"auto->8bit"}
    block = dit.blocks[0]  # the context projections stay exact: their error would reach every token alike
    assert block.cross_attn.k.kernel is None and block.cross_attn.v.kernel is None
    assert block.cross_attn.q.kernel is not None and block.self_attn.k.kernel is not None
    dit.set_attention("sdpa")  # a new choice on the 8-bit path goes through the same rule
    assert {block.cross_attn.backend for block in dit.blocks} == {"sdpa->8bit"}
    dit.set_fast_8bit(False)
    assert dit.effective_attention == "sdpa" and {block.self_attn.backend for block in dit.blocks} == {"sdpa"}
