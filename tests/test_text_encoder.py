"""umT5 text encoder: parity with transformers' UMT5EncoderModel in every accepted layout.

The reference is built by transformers from the same random weights, converted into each
layout here in the test (official names per WAN_SPEC 5.3, ComfyUI/HF names, prefixes,
scaled fp8, plain fp8, .pth) and loaded through wan_core's own loader.
"""

from __future__ import annotations

import pytest
import torch
from conftest import rel_err

import wan_core
from wan_core.errors import UnsupportedModelError
from wan_core.fp8 import dequantize_state_dict, quantize_state_dict
from wan_core.text import clean_prompt
from wan_core.text.tiny import spiece_tensor, tiny_spiece_model_bytes
from wan_core.tiny_models import TINY

transformers = pytest.importorskip("transformers", reason="transformers is the umT5 reference implementation")

PROMPTS = [
    "A cat walks across a sunny garden and stops to look at the camera.",
    "",
    "  Fireworks &amp;amp; crowds\n\tover the   harbor  ",
    "Blurry, low quality, static, overexposed, worst quality, jpeg artifacts",
    "café 😀 naïve über",
]

OFFICIAL_BLOCK = {  # HF/ComfyUI -> official names (WAN_SPEC 5.3), written independently of wan_core
    "layer.0.layer_norm.weight": "norm1.weight",
    "layer.0.SelfAttention.q.weight": "attn.q.weight",
    "layer.0.SelfAttention.k.weight": "attn.k.weight",
    "layer.0.SelfAttention.v.weight": "attn.v.weight",
    "layer.0.SelfAttention.o.weight": "attn.o.weight",
    "layer.0.SelfAttention.relative_attention_bias.weight": "pos_embedding.embedding.weight",
    "layer.1.layer_norm.weight": "norm2.weight",
    "layer.1.DenseReluDense.wi_0.weight": "ffn.gate.0.weight",
    "layer.1.DenseReluDense.wi_1.weight": "ffn.fc1.weight",
    "layer.1.DenseReluDense.wo.weight": "ffn.fc2.weight",
}


def hf_to_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in sd.items():
        if key == "shared.weight":
            out["token_embedding.weight"] = value
        elif key == "encoder.final_layer_norm.weight":
            out["norm.weight"] = value
        elif key.startswith("encoder.block."):
            _, _, index, rest = key.split(".", 3)
            out[f"blocks.{index}.{OFFICIAL_BLOCK[rest]}"] = value
    return out


def is_linear(name: str, tensor: torch.Tensor) -> bool:
    return tensor.ndim == 2 and "relative_attention_bias" not in name and name.startswith("encoder.block.")


@pytest.fixture(scope="module")
def spm_bytes() -> bytes:
    return tiny_spiece_model_bytes()


@pytest.fixture(scope="module")
def reference(spm_bytes):
    """(transformers model, its HF state dict) with random weights incl. perturbed norms."""
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_proto=spm_bytes).get_piece_size()
    cfg = transformers.UMT5Config(
        vocab_size=vocab,
        d_model=TINY.text_dim,
        d_kv=TINY.t5_d_kv,
        num_heads=TINY.t5_heads,
        num_layers=TINY.t5_layers,
        d_ff=TINY.t5_d_ff,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
    )
    torch.manual_seed(1)
    model = transformers.UMT5EncoderModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(0.2 * torch.randn_like(p))
            if "relative_attention_bias" in name:
                p.normal_(0.0, 0.5)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def reference_outputs(model, te, state_dict=None) -> list[torch.Tensor]:
    """transformers' output for PROMPTS (padded batch + attention mask), trimmed to real lengths."""
    if state_dict is not None:
        model = type(model)(model.config).eval()
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        assert set(missing) <= {"encoder.embed_tokens.weight"} and not unexpected, (missing, unexpected)
    ids = [te.tokenizer.encode(clean_prompt(p)) for p in PROMPTS]
    n = max(len(i) for i in ids)
    batch = torch.tensor([i + [0] * (n - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (n - len(i)) for i in ids])
    with torch.no_grad():
        hidden = model(input_ids=batch, attention_mask=mask).last_hidden_state
    return [hidden[row, : len(i)] for row, i in enumerate(ids)]


def assert_parity(te, expected: list[torch.Tensor], tol: float = 1e-4) -> None:
    got = te.encode(PROMPTS)
    for g, e, prompt in zip(got, expected, PROMPTS):
        assert g.dtype == torch.float32 and g.device.type == "cpu"
        assert g.shape == e.shape, (prompt, g.shape, e.shape)
        assert rel_err(g, e) <= tol, (prompt, rel_err(g, e))


def _with_prefix(sd, prefix):
    return {prefix + k: v for k, v in sd.items()}


LAYOUTS = ["comfyui", "comfyui_prefixed", "official", "official_prefixed", "official_pth"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_parity_with_transformers(layout, reference, spm_bytes, tmp_path):
    model, hf_sd = reference
    sd = dict(hf_sd) if layout.startswith("comfyui") else hf_to_official(hf_sd)
    if layout.endswith("prefixed"):
        sd = _with_prefix(sd, "text_encoders.umt5xxl.transformer." if layout.startswith("comfyui") else "model.")
    sd["spiece_model"] = spiece_tensor(spm_bytes)
    source = sd
    if layout == "official_pth":
        source = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
        torch.save(sd, source)
    te = wan_core.load_text_encoder(source, device="cpu", cache_dir=False)
    assert (te.config.d_model, te.config.layers, te.config.heads, te.config.d_kv, te.config.d_ff) == (
        TINY.text_dim,
        TINY.t5_layers,
        TINY.t5_heads,
        TINY.t5_d_kv,
        TINY.t5_d_ff,
    )
    assert_parity(te, reference_outputs(model, te))


@pytest.mark.parametrize("which", ["linears", "all_matrices"])
def test_parity_fp8_scaled_file(which, reference, spm_bytes, tmp_path):
    """ComfyUI scaled-fp8 file (marker + .scale_weight) vs transformers fed the dequantised weights.

    "all_matrices" also quantises the token embedding and the relative-bias tables.
    """
    from safetensors.torch import save_file

    model, hf_sd = reference
    q = quantize_state_dict(hf_sd, is_linear if which == "linears" else (lambda _n, t: t.ndim == 2))
    q["spiece_model"] = spiece_tensor(spm_bytes)
    path = tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    save_file(q, str(path))
    te = wan_core.load_text_encoder(str(path), device="cpu", cache_dir=False)
    expected = reference_outputs(model, te, dequantize_state_dict({k: v for k, v in q.items() if k != "spiece_model"}))
    assert_parity(te, expected)
    linear = te.load().blocks[0].attn.q
    assert linear.weight.dtype == torch.float8_e4m3fn and linear.scale_weight is not None


def test_parity_plain_fp8(reference, spm_bytes):
    model, hf_sd = reference
    sd = {k: (v.to(torch.float8_e4m3fn) if is_linear(k, v) else v) for k, v in hf_sd.items()}
    sd["spiece_model"] = spiece_tensor(spm_bytes)
    te = wan_core.load_text_encoder(sd, device="cpu", cache_dir=False)
    expected = reference_outputs(model, te, {k: v.float() for k, v in sd.items() if k != "spiece_model"})
    assert_parity(te, expected)


def test_done_criterion_tiny_comfyui_file(tmp_path):
    """write_tiny_t5 (fp8-scaled, embedded spiece_model) -> load_text_encoder(path) -> equals transformers."""
    from safetensors.torch import load_file

    from wan_core.text.tiny import write_tiny_t5

    path = tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    write_tiny_t5(path, fp8_scaled=True)
    te = wan_core.load_text_encoder(str(path), device="cpu", cache_dir=tmp_path / "cache")
    sd = dequantize_state_dict({k: v for k, v in load_file(str(path)).items() if k != "spiece_model"})
    cfg = transformers.UMT5Config(
        vocab_size=te.config.vocab,
        d_model=64,
        d_kv=16,
        num_heads=4,
        num_layers=2,
        d_ff=96,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
    )
    model = transformers.UMT5EncoderModel(cfg).eval()
    assert_parity(te, reference_outputs(model, te, sd), tol=1e-3)


def test_batch_equals_single_prompts(reference, spm_bytes):
    _, hf_sd = reference
    sd = dict(hf_sd, spiece_model=spiece_tensor(spm_bytes))
    batched = wan_core.load_text_encoder(sd, device="cpu", cache_dir=False).encode(PROMPTS)
    single = wan_core.load_text_encoder(sd, device="cpu", cache_dir=False)
    for prompt, b in zip(PROMPTS, batched):
        assert rel_err(single.encode([prompt])[0], b) <= 1e-5
    assert batched[1].shape[0] == 1  # empty prompt: just </s>


def test_not_a_text_encoder():
    with pytest.raises(UnsupportedModelError, match="not a umT5 text encoder"):
        wan_core.load_text_encoder({"decoder.conv_in.weight": torch.zeros(4, 4, 3, 3, 3)}, cache_dir=False)


def test_tokenizer_vocab_mismatch(reference, spm_bytes):
    from wan_core.errors import TokenizerError

    _, hf_sd = reference
    sd = dict(hf_sd, spiece_model=spiece_tensor(spm_bytes))
    sd["shared.weight"] = sd["shared.weight"][:10]
    te = wan_core.load_text_encoder(sd, device="cpu", cache_dir=False)
    with pytest.raises(TokenizerError, match="vocabulary"):
        te.encode(["A cat walks across a sunny garden"])
    assert te.load_count == 0  # detected before loading the weights


def test_real_umt5_xxl_sizes_from_shapes():
    """WAN_SPEC 5.1 shapes on the meta device: config inferred, parameter count as the official encoder."""
    from wan_core.checkpoints import open_checkpoint
    from wan_core.text.t5 import T5Config, UMT5Encoder
    from wan_core.text.t5_keys import to_official

    def meta(*shape):
        return torch.empty(*shape, device="meta", dtype=torch.bfloat16)

    sd = {"shared.weight": meta(256384, 4096), "encoder.final_layer_norm.weight": meta(4096)}
    for i in range(24):
        b = f"encoder.block.{i}.layer."
        sd.update(
            {
                b + "0.layer_norm.weight": meta(4096),
                b + "1.layer_norm.weight": meta(4096),
                b + "0.SelfAttention.relative_attention_bias.weight": meta(32, 64),
                b + "1.DenseReluDense.wi_0.weight": meta(10240, 4096),
                b + "1.DenseReluDense.wi_1.weight": meta(10240, 4096),
                b + "1.DenseReluDense.wo.weight": meta(4096, 10240),
            }
        )
        sd.update({b + f"0.SelfAttention.{n}.weight": meta(4096, 4096) for n in "qkvo"})
    cfg = T5Config.from_source(to_official(open_checkpoint(sd)))
    assert (cfg.d_model, cfg.layers, cfg.heads, cfg.d_kv, cfg.d_ff, cfg.vocab) == (4096, 24, 64, 64, 10240, 256384)
    with torch.device("meta"):
        model = UMT5Encoder(cfg)
    assert sum(p.numel() for p in model.parameters()) == 5_680_910_336
    assert len(model.state_dict()) == 242


def test_bf16_compute_close_to_fp32():
    """The accelerator path (bf16 compute, fp32 softmax/RMSNorm statistics) stays close to fp32."""
    from wan_core.text.tiny import tiny_t5_state_dict

    sd = tiny_t5_state_dict()
    ref = wan_core.load_text_encoder(sd, device="cpu", dtype="fp32", cache_dir=False).encode(PROMPTS)
    low = wan_core.load_text_encoder(sd, device="cpu", dtype="bf16", cache_dir=False).encode(PROMPTS)
    for r, b in zip(ref, low):
        assert b.dtype == torch.float32 and rel_err(b, r) < 3e-2
