"""umT5 tokenizer and prompt cleaning: ids equal transformers' on the same SentencePiece model.

The SentencePiece model is trained inside the tests (wan_core.text.tiny, cached per
process) with umT5's reserved ids: pad 0, </s> 1, <s> 2, unk 3 (WAN_SPEC Appendix B).
"""

from __future__ import annotations

import logging

import pytest
import torch

import wan_core
from wan_core.errors import TokenizerError
from wan_core.text import clean_prompt
from wan_core.text.tiny import official_to_comfyui, spiece_tensor, tiny_spiece_model_bytes, tiny_t5_state_dict
from wan_core.text.tokenizer import embedded_tokenizer, tokenizer_from_path

transformers = pytest.importorskip("transformers", reason="transformers is the tokenizer reference")

# Known-vocabulary prompts, plus whitespace, HTML entities, unicode (NFKC, accents, CJK, emoji -> unk),
# and control pieces written in the text.
PROMPTS = [
    "A cat walks across a sunny garden and stops to look at the camera.",
    "",
    "   ",
    "hello   world\t\tand\nnew line",
    "  leading and trailing  ",
    "Fish &amp; chips &amp;amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#39;x&#39;",
    "Ｆｕｌｌ ｗｉｄｔｈ ＡＢＣ ①② ﬁne",
    "café naïve über Straße",
    "日本語のテキスト, 😀 emoji",
    "a\u00a0non\u2009breaking\u3000space",
    "</s> x <pad> and <s> inside",
    "The quick brown fox jumps over the lazy dog; numbers 0 1 2 3 4 5 6 7 8 9 and 2024.",
]


@pytest.fixture(scope="module")
def spm_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("umt5-tokenizer")
    (folder / "spiece.model").write_bytes(tiny_spiece_model_bytes())
    return folder / "spiece.model"


@pytest.fixture(scope="module")
def hf_converted(spm_path):
    """tokenizers.Tokenizer built by transformers' T5Converter: the route that produced umT5's tokenizer.json."""
    import sentencepiece as spm
    from transformers.convert_slow_tokenizer import T5Converter

    sp = spm.SentencePieceProcessor(model_file=str(spm_path))

    class Original:  # the attributes T5Converter reads from a slow tokenizer
        vocab_file = str(spm_path)
        _extra_ids = 0
        handle_byte_fallback = False

        def convert_tokens_to_ids(self, token):
            return sp.piece_to_id(token)

    return T5Converter(Original()).converted()


def our_ids(tok, text):
    return tok.encode(text)


@pytest.mark.parametrize("cleaned", [False, True])
def test_ids_equal_transformers_converted_tokenizer(spm_path, hf_converted, cleaned):
    ours = tokenizer_from_path(spm_path)
    for prompt in PROMPTS:
        text = clean_prompt(prompt) if cleaned else prompt
        assert our_ids(ours, text) == hf_converted.encode(text).ids, repr(text)


def test_ids_equal_transformers_t5tokenizer(spm_path, hf_converted):
    """transformers 5's T5Tokenizer hard-codes unk id 2 (our model has unk 3, as umT5), so compare on
    prompts without unknown characters there; unknown characters are covered by the converter test."""
    hf = transformers.T5Tokenizer.from_pretrained(str(spm_path.parent), extra_ids=0)
    ours = tokenizer_from_path(spm_path)
    known = [clean_prompt(p) for p in PROMPTS if 3 not in hf_converted.encode(clean_prompt(p)).ids]
    assert len(known) >= 6
    for text in known:
        assert our_ids(ours, text) == hf(text).input_ids, repr(text)
        assert our_ids(ours, text)[-1] == 1  # </s> appended
        assert "<s>" in text or 2 not in our_ids(ours, text)  # no BOS


def test_tokenizer_json_equals_spiece(spm_path, hf_converted, tmp_path):
    hf_converted.save(str(tmp_path / "tokenizer.json"))
    from_json = tokenizer_from_path(tmp_path / "tokenizer.json")
    from_spm = tokenizer_from_path(spm_path)
    for prompt in PROMPTS:
        assert from_json.encode(prompt) == from_spm.encode(prompt), repr(prompt)


def test_embedded_tensor_equals_file(spm_path):
    embedded = embedded_tokenizer(spiece_tensor(tiny_spiece_model_bytes()), "test")
    assert embedded.identity == tokenizer_from_path(spm_path).identity
    assert embedded.encode(PROMPTS[0]) == tokenizer_from_path(spm_path).encode(PROMPTS[0])


def test_truncation_at_512_with_warning(spm_path, caplog):
    tok = tokenizer_from_path(spm_path)
    long_prompt = "a cat walks " * 400
    with caplog.at_level(logging.WARNING):
        ids = tok.encode(long_prompt)
    assert len(ids) == 512 and ids[-1] == 1
    assert ids[:511] == tok.encode(long_prompt, max_tokens=10_000)[:511]
    assert any("truncated" in r.message for r in caplog.records)


def test_long_prompt_embedding_is_512_tokens():
    te = wan_core.load_text_encoder(tiny_t5_state_dict(), device="cpu", cache_dir=False)
    assert te.encode(["a cat walks " * 400])[0].shape == (512, te.config.d_model)


def test_clean_prompt():
    assert clean_prompt("  a &amp;amp; b\n\t c  ") == "a & b c"
    assert clean_prompt("&lt;tag&gt; &quot;Q&quot;") == '<tag> "Q"'
    assert clean_prompt("Keep CASE, punctuation!?") == "Keep CASE, punctuation!?"
    assert clean_prompt("") == ""
    assert clean_prompt("cafÃ©") == "café"  # ftfy repairs mojibake


def _sd_without_tokenizer(layout="comfyui"):
    sd = tiny_t5_state_dict(layout=layout)
    del sd["spiece_model"]
    return sd


def _save(sd, path):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


def test_tokenizer_sources_in_order(tmp_path, spm_path):
    embedded = _save(tiny_t5_state_dict(), tmp_path / "a" / "umt5.safetensors")
    assert wan_core.load_text_encoder(embedded, cache_dir=False).tokenizer.description.startswith("the spiece_model")

    bare = _save(_sd_without_tokenizer(), tmp_path / "b" / "umt5.safetensors")
    te = wan_core.load_text_encoder(bare, tokenizer=spm_path.parent, cache_dir=False)
    assert te.tokenizer.description == str(spm_path)

    official = _sd_without_tokenizer("official")
    ckpt = tmp_path / "c" / "models_t5_umt5-xxl-enc-bf16.pth"
    ckpt.parent.mkdir()
    torch.save(official, ckpt)
    sibling = tmp_path / "c" / "google" / "umt5-xxl" / "spiece.model"
    sibling.parent.mkdir(parents=True)
    sibling.write_bytes(spm_path.read_bytes())
    te = wan_core.load_text_encoder(ckpt, cache_dir=False)
    assert te.tokenizer.description == str(sibling)
    assert te.encode(["A cat"])[0].shape == (len(te.tokenizer.encode("A cat")), 64)


def test_missing_tokenizer_names_three_ways(tmp_path):
    bare = _save(_sd_without_tokenizer(), tmp_path / "umt5.safetensors")
    with pytest.raises(TokenizerError) as info:
        wan_core.load_text_encoder(bare, cache_dir=False)
    message = str(info.value)
    assert "spiece_model" in message and "tokenizer=" in message and "next to the checkpoint" in message


def test_official_and_comfyui_tiny_layouts_agree():
    official = tiny_t5_state_dict(layout="official")
    comfy = official_to_comfyui({k: v for k, v in official.items() if k != "spiece_model"})
    assert comfy.keys() == {k for k in tiny_t5_state_dict() if k != "spiece_model"}
    a = wan_core.load_text_encoder(official, device="cpu", cache_dir=False).encode(PROMPTS[:1])[0]
    b = wan_core.load_text_encoder(tiny_t5_state_dict(), device="cpu", cache_dir=False).encode(PROMPTS[:1])[0]
    assert torch.equal(a, b)
