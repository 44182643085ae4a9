"""The attention kernel is chosen by us, per device and dtype, whatever SDPA state other code left behind."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import profile

from wan_core.dit import attention as attn
from wan_core.errors import BackendUnavailableError

FLAGS = ("cudnn", "flash", "mem_efficient", "math")


def _enabled() -> tuple[str, ...]:
    return tuple(name for name in FLAGS if getattr(torch._C, f"_get_{name}_sdp_enabled")())


def _sdpa_ops(fn) -> list[str]:
    """The aten SDPA implementations that ran inside ``fn`` (read from the profiler)."""
    with profile() as prof:
        fn()
    return sorted({e.name for e in prof.events() if e.name.startswith("aten::_scaled_dot_product")})


def _qkv():
    return (torch.randn(1, 48, 2, 32) for _ in range(3))


@pytest.fixture(autouse=True)
def _fresh_memory():
    attn._refused.clear()
    yield
    attn._refused.clear()


def test_order_per_device(monkeypatch):
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.version, "hip", None)
    assert attn.sdpa_order(cuda, torch.bfloat16)[:2] == ("sdpa_cudnn", "sdpa_flash")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 9))
    assert attn.sdpa_order(cuda, torch.bfloat16)[0] == "sdpa_flash"
    assert "sdpa_cudnn" not in attn.sdpa_order(cuda, torch.float32)
    assert attn.sdpa_order(torch.device("cpu"), torch.float32) == ("sdpa_flash", "sdpa_math")


@pytest.mark.parametrize("foreign_priority", [True, False])
def test_choice_survives_a_foreign_sdpa_context(foreign_priority):
    """ComfyUI runs SDPA inside sdpa_kernel([...], set_priority=True); our pick must not follow it."""
    q, k, v = _qkv()
    want = ["aten::_scaled_dot_product_flash_attention_for_cpu"]
    assert _sdpa_ops(lambda: attn.attention(q, k, v, "sdpa")) == want
    with sdpa_kernel([SDPBackend.MATH], set_priority=foreign_priority):
        # a plain call follows the foreign state, ours does not
        assert _sdpa_ops(lambda: F.scaled_dot_product_attention(q, k, v)) == [
            "aten::_scaled_dot_product_attention_math"
        ]
        assert _sdpa_ops(lambda: attn.attention(q, k, v, "sdpa")) == want
        assert _enabled() == ("math",)  # and the foreign state is left as it was
    assert _sdpa_ops(lambda: attn.attention(q, k, v, "sdpa")) == want
    assert _sdpa_ops(lambda: attn.attention(q, k, v, "sdpa_math")) == ["aten::_scaled_dot_product_attention_math"]


def test_each_call_enables_exactly_one_kernel_and_remembers_refusals(monkeypatch):
    """With cuDNN first in the order on a CPU tensor, cuDNN refuses once, then flash is used directly."""
    seen = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append(_enabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(attn.F, "scaled_dot_product_attention", spy)
    monkeypatch.setattr(attn, "sdpa_order", lambda device, dtype: ("sdpa_cudnn", "sdpa_flash", "sdpa_math"))
    q, k, v = _qkv()
    with sdpa_kernel([SDPBackend.MATH, SDPBackend.CUDNN_ATTENTION], set_priority=True):
        first = attn.attention(q, k, v, "sdpa")
    second = attn.attention(q, k, v, "sdpa")
    assert seen == [("cudnn",), ("flash",), ("flash",)]
    assert attn.chosen_sdpa_kernel(q, k) == "sdpa_flash"
    assert torch.equal(first, second)
    torch.testing.assert_close(first, real(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2))


def test_an_explicit_kernel_that_cannot_run_says_which():
    q, k, v = _qkv()
    with pytest.raises(BackendUnavailableError, match="sdpa_cudnn"):
        attn.attention(q, k, v, "sdpa_cudnn")
    assert attn.check_backend("cudnn") == "sdpa_cudnn"
    assert attn.select("sdpa_flash", torch.device("cpu"))(q, k, v).shape == q.shape
