"""``wan_core.load_text_encoder``: a umT5 encoder with tokenizer and embedding cache.

Loading is lazy: opening reads only the file header (config from shapes) and the
embedded tokenizer. Weights are materialised on the first cache miss, so a prompt
that was encoded before (in this process or, through the disk cache, in an earlier
one) never loads the 5.7 B-parameter encoder again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import cast

import torch

from ..checkpoints import CheckpointInput, PathLike, open_checkpoint
from ..devices import compute_dtype_for, empty_cache, is_fp8, resolve_device, resolve_dtype
from ..errors import TokenizerError
from ..fp8 import attach_scales, dequantizing_view
from ..materialize import materialize
from ..memory import ModelHost
from ..ops import WanLinear
from ..tensor_source import TensorSource
from .cache import EmbeddingCache, cache_key, default_cache_dir
from .prompt import clean_prompt
from .t5 import T5Config, UMT5Encoder
from .t5_keys import SPIECE_KEY, model_keys, to_official
from .tokenizer import (
    MAX_TOKENS,
    Tokenizer,
    embedded_tokenizer,
    find_sibling_tokenizer,
    missing_tokenizer_error,
    tokenizer_from_path,
)

log = logging.getLogger(__name__)

BATCH = 8  # prompts encoded per forward pass (bounds activation memory for 512-token prompts)


class TextEncoder:
    """Prompts -> trimmed umT5 embeddings, with a memory + disk cache in front of a lazy model.

    ``config``: :class:`T5Config`; ``identity``: changes when the file or tokenizer changes;
    ``load_count``: how many times weights were materialised (tests use it).
    """

    def __init__(
        self,
        src: TensorSource,
        tokenizer: Tokenizer,
        *,
        device: torch.device,
        dtype: torch.dtype,
        storage_fp8: torch.dtype | None,
        cache: EmbeddingCache,
        keep_loaded: bool,
        storage_device: torch.device | None = None,
    ) -> None:
        self._src = src
        self.tokenizer = tokenizer
        self.config = T5Config.from_source(src)
        self.device, self.dtype, self._storage_fp8 = device, dtype, storage_fp8
        self.storage_device = storage_device or device
        self.identity = f"{src.identity}|{tokenizer.identity}"
        self.cache, self.keep_loaded = cache, keep_loaded
        self.load_count = 0
        self._model: UMT5Encoder | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def encode(self, prompts: list[str] | str, host: ModelHost | None = None) -> list[torch.Tensor]:
        """Each prompt -> float32 CPU tensor [L_i, d_model], L_i = real tokens incl. ``</s>``.

        ``host``: a memory manager asked to make the encoder ready (it may move it to its
        compute device) before it runs; cache hits never load or move it.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        cleaned = [clean_prompt(p) for p in prompts]
        keys = [cache_key(self.identity, str(self.dtype), str(MAX_TOKENS), text) for text in cleaned]
        results = {k: self.cache.get(k) for k in dict.fromkeys(keys)}
        missing = [(k, text) for k, text in dict(zip(keys, cleaned)).items() if results[k] is None]
        if missing:
            try:
                for k, emb in zip((k for k, _ in missing), self._encode_uncached([t for _, t in missing], host)):
                    results[k] = self.cache.put(k, emb)
            finally:
                if not self.keep_loaded:
                    self.release()
        return [cast(torch.Tensor, results[k]).clone() for k in keys]  # all filled; clones: callers may edit them

    def tokenize(self, text: str) -> list[int]:
        """Ids of a cleaned prompt + ``</s>`` (at most 512), checked against the vocabulary size."""
        ids = self.tokenizer.encode(text, MAX_TOKENS)
        if max(ids) >= self.config.vocab:
            raise TokenizerError(
                f"Token id {max(ids)} from {self.tokenizer.description} does not fit the encoder's "
                f"vocabulary of {self.config.vocab}: the tokenizer belongs to another model. Use the umT5 "
                "tokenizer (google/umt5-xxl)."
            )
        return ids

    def _encode_uncached(self, texts: list[str], host: ModelHost | None) -> list[torch.Tensor]:
        id_lists = [self.tokenize(t) for t in texts]  # tokenizer errors surface before the weights load
        model = self.load()
        if host is not None:
            host.activate(model)
        out: list[torch.Tensor] = []
        for start in range(0, len(id_lists), BATCH):
            out.extend(self._forward(model, id_lists[start : start + BATCH]))
        return out

    def _forward(self, model: UMT5Encoder, id_lists: list[list[int]]) -> list[torch.Tensor]:
        longest = max(len(ids) for ids in id_lists)
        ids = torch.zeros(len(id_lists), longest, dtype=torch.long)  # pad id 0
        mask = torch.zeros(len(id_lists), longest, dtype=torch.long)
        for row, seq in enumerate(id_lists):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        device = model.token_embedding.weight.device  # where the model is now (a host may have moved it)
        with torch.inference_mode():
            hidden = model(ids.to(device), mask.to(device), self.dtype)  # [B, L, C]
        return [hidden[row, : len(seq)].float().cpu().clone() for row, seq in enumerate(id_lists)]

    def load(self) -> UMT5Encoder:
        """Materialise the weights on ``storage_device`` (once; again after :meth:`release`)."""
        if self._model is None:
            where = self.storage_device
            log.info("Loading umT5 text encoder (%s) to %s as %s", self._src.description, where, self.dtype)
            self._model = build_encoder(self._src, self.config, where, self.dtype, self._storage_fp8)
            self.load_count += 1
        return self._model

    def release(self) -> None:
        """Drop the weights (the embedding cache stays); the next cache miss loads them again."""
        if self._model is not None:
            self._model = None
            empty_cache(self.device)


def _linear_weight_names(module: torch.nn.Module) -> set[str]:
    return {f"{name}.weight" for name, sub in module.named_modules() if isinstance(sub, WanLinear)}


def build_encoder(
    src: TensorSource, cfg: T5Config, device: torch.device, dtype: torch.dtype, storage_fp8: torch.dtype | None
) -> UMT5Encoder:
    """Build on the meta device, then fill one tensor at a time (fp8 linears stay fp8)."""
    with torch.device("meta"):
        model = UMT5Encoder(cfg)
    linear = _linear_weight_names(model)
    keep_fp8 = linear | {"token_embedding.weight"}

    def dtype_rule(name: str, stored: torch.dtype) -> torch.dtype:
        if name in keep_fp8 and is_fp8(stored):
            return stored
        if name in linear and storage_fp8 is not None:
            return storage_fp8
        return dtype

    materialize(
        model,
        dequantizing_view(src, model_keys(src), keep_fp8),
        device=device,
        dtype_rule=dtype_rule,
        what="the umT5 encoder",
    )
    attach_scales(model, src, device)
    emb_scale = "token_embedding.scale_weight"
    if is_fp8(model.token_embedding.weight.dtype) and emb_scale in src:
        model.embedding_scale = src[emb_scale].float().to(device)
    return model.eval().requires_grad_(False)


def _resolve_tokenizer(src: TensorSource, tokenizer: str | os.PathLike | None, path: Path | None) -> Tokenizer:
    if SPIECE_KEY in src:
        if tokenizer is not None:
            log.warning(
                "%s embeds its tokenizer (spiece_model), which is used; tokenizer=%s is ignored.",
                src.description,
                tokenizer,
            )
        return embedded_tokenizer(src[SPIECE_KEY], src.description)
    if tokenizer is not None:
        return tokenizer_from_path(tokenizer)
    found = find_sibling_tokenizer(path)
    if found is None:
        raise missing_tokenizer_error(src.description)
    return found


def _cache_folder(cache_dir: str | os.PathLike | bool | None, identity: str) -> Path | None:
    if cache_dir is False or identity.startswith("dict:"):
        return None  # in-memory state dicts have no stable identity across processes
    return default_cache_dir() if cache_dir in (None, True) else Path(cache_dir)


def load_text_encoder(
    path_or_state_dict: CheckpointInput | TensorSource,
    tokenizer: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    cache_dir: str | os.PathLike | bool | None = None,
    keep_loaded: bool = True,
    storage_device: torch.device | str | None = None,
) -> TextEncoder:
    """Open a umT5 encoder (official, HF/ComfyUI, fp8-scaled or plain fp8 layout) without loading it.

    ``device``: where the encoder runs (e.g. "cpu" while the DiT owns the GPU).
    ``dtype``: compute dtype (None: bf16 on accelerators, fp32 on CPU); an fp8 dtype means
    fp8 *storage* of the linear weights with the default compute dtype.
    ``cache_dir``: folder for the disk cache (None: ``$WAN_CORE_CACHE/text`` or
    ``~/.cache/wan_core/text``; False: memory only). ``keep_loaded=False`` releases the
    weights after each call that had to load them. ``storage_device``: where the weights are put
    (default ``device``; e.g. the CPU when a memory manager moves them in before each use).
    """
    src = to_official(open_checkpoint(path_or_state_dict))
    dev = resolve_device(device)
    storage = resolve_dtype(dtype, dev)
    storage_fp8 = storage if is_fp8(storage) else None
    compute = compute_dtype_for(storage, dev)
    path = None if isinstance(path_or_state_dict, (Mapping, TensorSource)) else _single_path(path_or_state_dict)
    tok = _resolve_tokenizer(src, tokenizer, path)
    cache = EmbeddingCache(_cache_folder(cache_dir, src.identity))
    home = resolve_device(storage_device) if storage_device is not None else dev
    return TextEncoder(
        src,
        tok,
        device=dev,
        dtype=compute,
        storage_fp8=storage_fp8,
        cache=cache,
        keep_loaded=keep_loaded,
        storage_device=home,
    )


def _single_path(source: PathLike | Iterable[PathLike]) -> Path | None:
    if isinstance(source, (str, os.PathLike)):
        return Path(source)
    paths = list(source) if not isinstance(source, (bytes, bytearray)) else []
    return Path(paths[0]) if paths else None
