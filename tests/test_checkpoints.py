"""The shared checkpoint reader: formats, lazy reads, prefixes, fp8 markers, errors."""

import json

import pytest
import torch
from safetensors.torch import save_file

from wan_core.checkpoints import (
    guess_kind,
    open_checkpoint,
    scaled_fp8_dtype,
    strip_known_prefix,
)
from wan_core.errors import CheckpointError
from wan_core.materialize import materialize


def _sd():
    return {
        "a.weight": torch.randn(4, 3),
        "a.bias": torch.randn(4).to(torch.bfloat16),
        "b.w8": torch.randn(2, 2).to(torch.float8_e4m3fn),
    }


def test_safetensors_roundtrip_all_dtypes(tmp_path):
    sd = _sd()
    save_file(sd, tmp_path / "m.safetensors", metadata={"k": "v"})
    src = open_checkpoint(tmp_path / "m.safetensors")
    assert set(src) == set(sd)
    assert src.shape("a.weight") == (4, 3)
    assert src.dtype("b.w8") == torch.float8_e4m3fn
    assert src.metadata == {"k": "v"}
    for k, v in sd.items():
        assert torch.equal(src[k].view(torch.uint8), v.view(torch.uint8))


def test_shards_folder_and_pth(tmp_path):
    sd = _sd()
    save_file({"a.weight": sd["a.weight"]}, tmp_path / "m-00001-of-00002.safetensors")
    save_file({"a.bias": sd["a.bias"]}, tmp_path / "m-00002-of-00002.safetensors")
    index = {"weight_map": {"a.weight": "m-00001-of-00002.safetensors", "a.bias": "m-00002-of-00002.safetensors"}}
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps({"dim": 4}))
    src = open_checkpoint(tmp_path)
    assert set(src) == {"a.weight", "a.bias"} and src.config == {"dim": 4}
    torch.save({"x": torch.ones(2)}, tmp_path / "x.pth")
    assert torch.equal(open_checkpoint(tmp_path / "x.pth")["x"], torch.ones(2))
    torch.save({"x": torch.ones(2)}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert torch.equal(open_checkpoint(tmp_path / "legacy.pth")["x"], torch.ones(2))  # pre-1.6 format: no mmap


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        open_checkpoint(tmp_path / "evil.pth")


def test_prefix_strip_and_fp8_marker():
    sd = {f"model.diffusion_model.blocks.{i}.w": torch.zeros(1) for i in range(6)}
    sd["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    src = strip_known_prefix(open_checkpoint(sd))
    assert "blocks.0.w" in src and "scaled_fp8" in src
    assert scaled_fp8_dtype(src) == torch.float8_e4m3fn
    assert scaled_fp8_dtype(open_checkpoint({"x": torch.zeros(1)})) is None


def test_guess_kind():
    assert "VAE" in guess_kind(["decoder.middle.0.residual.0.gamma"])
    assert "text encoder" in guess_kind(["encoder.block.0.layer.0.SelfAttention.q.weight"])
    assert "LoRA" in guess_kind(["diffusion_model.blocks.0.self_attn.q.lora_A.weight"])


def test_materialize_reports_missing_and_unexpected():
    with torch.device("meta"):
        m = torch.nn.Linear(3, 4)
    with pytest.raises(CheckpointError, match="missing 1 tensors.*bias.*unexpected 1"):
        materialize(m, {"weight": torch.zeros(4, 3), "extra": torch.zeros(1)})
    materialize(
        m,
        {"weight": torch.ones(4, 3), "bias": torch.zeros(4, dtype=torch.bfloat16)},
        dtype_rule=lambda name, dt: torch.float32,
    )
    assert m.weight.device.type == "cpu" and m.bias.dtype == torch.float32


def test_truncated_file_is_a_typed_error(tmp_path):
    save_file({"a": torch.randn(100)}, tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[:-50])
    with pytest.raises(CheckpointError, match="truncated"):
        open_checkpoint(tmp_path / "m.safetensors")["a"]


def test_fp8_scaled_roundtrip_through_wanlinear():
    from wan_core.fp8 import attach_scales, dequantize_state_dict, quantize_state_dict, split_scales
    from wan_core.ops import WanLinear

    lin = WanLinear(8, 4)
    sd = {"weight": torch.randn(4, 8), "bias": torch.randn(4)}
    q = quantize_state_dict({"l." + k: v for k, v in sd.items()}, lambda n, t: True)
    model_keys, scale_keys = split_scales(q)
    assert scale_keys == {"l.scale_weight", "scaled_fp8"} and q["l.weight"].dtype == torch.float8_e4m3fn
    parent = torch.nn.Module()
    parent.l = lin
    materialize(parent, {k: q[k] for k in model_keys})
    assert attach_scales(parent, q) == 1
    x = torch.randn(3, 8)
    ref = dequantize_state_dict(q)
    expected = x @ ref["l.weight"].T + ref["l.bias"]
    assert torch.allclose(lin(x), expected, atol=1e-5)
    assert (ref["l.weight"] - sd["weight"]).abs().max() < 0.1 * sd["weight"].abs().max()
