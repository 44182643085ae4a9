"""LoRA on quantised weights (GGUF blocks, INT8): run-time adapters, merges that re-quantise, exact undo.

Reference: the same model with its weights dequantised to fp32 and the LoRA merged there
(our fp32 merge math is checked against diffusers in test_lora_parity.py).
"""

import pytest
import torch
from conftest import rel_err
from quant_helpers import block_linear_types, write_gguf
from test_dit_helpers import cached_tiny, make_inputs

import wan_core
from wan_core.lora import apply_lora, remove_lora
from wan_core.lora.tiny import tiny_lora_state_dict
from wan_core.ops import WanLinear

RUNTIME_TOL = 1e-5


def dequantised_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The fp32 state dict a model with quantised Linear weights stands for."""
    out = {k: v.float() for k, v in model.state_dict().items() if not k.endswith("scale_weight")}
    for name, m in model.named_modules():
        if isinstance(m, WanLinear):
            out[f"{name}.weight"] = m.dequantized_weight(torch.float32)
    return out


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory):
    sd = cached_tiny("wan2.1-t2v")
    types = block_linear_types(sd, ("Q4_K", "Q5_0", "Q6_K", "Q8_0", "Q3_K"))
    return write_gguf(tmp_path_factory.mktemp("gguf") / "t2v.gguf", sd, types)


def _models(kind, gguf_path):
    if kind == "gguf":
        return wan_core.load_dit(gguf_path, device="cpu")
    return wan_core.load_dit(cached_tiny("wan2.1-t2v"), device="cpu", dtype="int8")


@pytest.mark.parametrize("kind", ["gguf", "int8"])
def test_runtime_lora_on_quantised_weights_equals_the_dequantised_merge(kind, gguf_path):
    model = _models(kind, gguf_path)
    lora = tiny_lora_state_dict(cached_tiny("wan2.1-t2v"), rank=4, seed=3, fmt="comfyui")
    reference = wan_core.load_dit(dequantised_state(model), device="cpu")
    apply_lora(reference, lora, strength=0.8, mode="merge")
    inputs = make_inputs(model.config)
    base = model(**inputs)
    report = apply_lora(model, lora, strength=0.8, mode="runtime")
    q = model.blocks[0].self_attn.q
    assert report.runtime > 0 and q.weight.dtype in (torch.uint8, torch.int8)  # stored weight untouched
    out = model(**inputs)
    err = rel_err(out, reference(**inputs))
    print(f"{kind}: runtime LoRA vs dequantised merge rel err {err:.2e}")
    assert err <= RUNTIME_TOL and rel_err(out, base) > 1e-2
    remove_lora(model, report)
    assert torch.equal(model(**inputs), base)


@pytest.mark.parametrize("kind", ["gguf", "int8"])
def test_merged_lora_requantises_and_keep_original_restores_bit_exactly(kind, gguf_path):
    model = _models(kind, gguf_path)
    lora = tiny_lora_state_dict(cached_tiny("wan2.1-t2v"), rank=4, seed=3, fmt="comfyui")
    reference = wan_core.load_dit(dequantised_state(model), device="cpu")
    apply_lora(reference, lora, mode="merge")
    inputs = make_inputs(model.config)
    base = model(**inputs)
    layer = model.blocks[0].self_attn.q
    stored = (layer.weight.detach().clone(), layer.ggml_type, layer.scale_weight)
    report = apply_lora(model, lora, mode="merge", keep_original=True)
    if kind == "gguf":  # block formats are re-quantised as Q8_0
        assert {m.ggml_type for m in model.blocks.modules() if isinstance(m, WanLinear)} == {"Q8_0"}
    else:
        assert layer.weight.dtype == torch.int8 and not torch.equal(layer.scale_weight, stored[2])
    err = rel_err(model(**inputs), reference(**inputs))
    print(f"{kind}: merged LoRA (re-quantised) vs dequantised merge rel err {err:.2e}")
    assert err < 2e-2
    remove_lora(model, report)
    assert torch.equal(layer.weight, stored[0]) and layer.ggml_type == stored[1]
    assert torch.equal(model(**inputs), base)


def test_merge_without_originals_subtracts_and_stays_close(gguf_path):
    model = _models("int8", gguf_path)
    lora = tiny_lora_state_dict(cached_tiny("wan2.1-t2v"), rank=4, seed=3, fmt="comfyui")
    inputs = make_inputs(model.config)
    base = model(**inputs)
    report = apply_lora(model, lora, mode="merge")
    report.set_strength(0.0)  # subtracts its own contribution, re-quantising again
    assert rel_err(model(**inputs), base) < 2e-2
