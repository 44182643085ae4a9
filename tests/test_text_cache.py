"""Text-embedding cache: hits skip loading the encoder; a changed file misses; disk survives objects."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import rel_err

import wan_core
from wan_core.text.cache import CACHE_ENV, default_cache_dir
from wan_core.text.tiny import write_tiny_t5

PROMPTS = ["A cat walks across a sunny garden.", "Snow falls softly on a quiet village street."]


@pytest.fixture()
def encoder_file(tmp_path):
    path = tmp_path / "text_encoders" / "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    path.parent.mkdir()
    write_tiny_t5(path, fp8_scaled=True, seed=0)
    return path


def test_lazy_load_and_memory_hit(encoder_file, tmp_path):
    te = wan_core.load_text_encoder(encoder_file, device="cpu", cache_dir=tmp_path / "cache")
    assert te.load_count == 0 and not te.loaded  # opening reads the header and tokenizer only
    first = te.encode(PROMPTS)
    assert te.load_count == 1
    again = te.encode([PROMPTS[1], "  A cat walks  across a sunny garden. "])  # same after cleaning
    assert te.load_count == 1
    assert torch.equal(again[0], first[1]) and torch.equal(again[1], first[0])
    again[0].zero_()  # callers get copies: editing one must not poison the cache
    assert torch.equal(te.encode([PROMPTS[1]])[0], first[1])


def test_disk_cache_survives_new_encoder_object(encoder_file, tmp_path):
    cache = tmp_path / "cache"
    first = wan_core.load_text_encoder(encoder_file, device="cpu", cache_dir=cache).encode(PROMPTS)
    assert list(cache.rglob("*.safetensors"))
    te = wan_core.load_text_encoder(encoder_file, device="cpu", cache_dir=cache)
    second = te.encode(PROMPTS)
    assert te.load_count == 0
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_changed_file_invalidates(encoder_file, tmp_path):
    cache = tmp_path / "cache"
    te = wan_core.load_text_encoder(encoder_file, device="cpu", cache_dir=cache)
    old = te.encode(PROMPTS[:1])[0]
    write_tiny_t5(encoder_file, fp8_scaled=True, seed=1)  # new weights, same name
    stat = encoder_file.stat()
    os.utime(encoder_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    te2 = wan_core.load_text_encoder(encoder_file, device="cpu", cache_dir=cache)
    assert te2.identity != te.identity
    new = te2.encode(PROMPTS[:1])[0]
    assert te2.load_count == 1
    assert rel_err(new, old) > 0.1


def test_release_keeps_cache_and_keep_loaded_false(encoder_file, tmp_path):
    te = wan_core.load_text_encoder(encoder_file, device="cpu", cache_dir=False, keep_loaded=False)
    a = te.encode(PROMPTS[:1])[0]
    assert te.load_count == 1 and not te.loaded  # released right after encoding
    assert torch.equal(te.encode(PROMPTS[:1])[0], a) and te.load_count == 1  # memory hit, no reload
    te.encode(PROMPTS[1:])
    assert te.load_count == 2 and not te.loaded
    te2 = wan_core.load_text_encoder(encoder_file, device="cpu", cache_dir=False)
    te2.encode(PROMPTS[:1])
    te2.release()
    assert not te2.loaded and te2.encode(PROMPTS[:1])[0].shape == a.shape and te2.load_count == 1


def test_cache_key_depends_on_dtype(encoder_file, tmp_path):
    cache = tmp_path / "cache"
    wan_core.load_text_encoder(encoder_file, device="cpu", dtype="fp32", cache_dir=cache).encode(PROMPTS[:1])
    te = wan_core.load_text_encoder(encoder_file, device="cpu", dtype="bf16", cache_dir=cache)
    te.encode(PROMPTS[:1])
    assert te.load_count == 1  # a bf16 run does not reuse fp32 embeddings


def test_default_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert default_cache_dir() == tmp_path / "text"
    monkeypatch.delenv(CACHE_ENV)
    assert default_cache_dir().parts[-3:] == (".cache", "wan_core", "text")


def test_state_dict_input_uses_memory_cache_only(tmp_path, monkeypatch):
    from wan_core.text.tiny import tiny_t5_state_dict

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    te = wan_core.load_text_encoder(tiny_t5_state_dict(), device="cpu")
    te.encode(PROMPTS[:1])
    te.encode(PROMPTS[:1])
    assert te.load_count == 1 and not list(tmp_path.rglob("*.safetensors"))
