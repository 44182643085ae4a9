"""Embedding cache: the same (encoder identity, cleaned prompt) is encoded once.

Two levels: an in-memory LRU per encoder object, and ``<hash>.safetensors`` files in a
cache folder that outlive the process. The key hashes everything the embedding depends
on (encoder file identity = path + size + mtime, tokenizer identity, compute dtype,
token limit, cleaned prompt), so a changed file simply misses.

The folder is an LRU too: a hit refreshes the file's modification time, and after each
write the oldest files go until the folder is under its size limit
(``$WAN_CORE_TEXT_CACHE_MB``, default :data:`DEFAULT_LIMIT_MB`). Files are written atomically
(:mod:`wan_core.atomic`). A non-finite embedding is never cached (it would blacken every later
run of that prompt): storing one raises, and one found on disk is deleted and re-encoded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path

import torch

from ..atomic import PARTIAL_MARK, atomic_path
from ..errors import InputError, NonFiniteError
from ..finite import all_finite

log = logging.getLogger(__name__)

CACHE_ENV = "WAN_CORE_CACHE"
LIMIT_ENV = "WAN_CORE_TEXT_CACHE_MB"
# umT5 embeddings are [tokens, 4096] float32 = 16 KiB per token: 1 GiB holds 128 prompts of the full
# 512 tokens, about 650 of a typical 100 tokens.
DEFAULT_LIMIT_MB = 1024
TENSOR_NAME = "embedding"
STALE_PARTIAL_S = 3600.0  # a .partial file this old belongs to a process that died mid-write


def default_cache_dir() -> Path:
    """``$WAN_CORE_CACHE/text`` when that variable is set, else ``~/.cache/wan_core/text``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "wan_core"
    if root and base.exists() and not base.is_dir():
        raise InputError(
            f"{CACHE_ENV}={root!r} is a file, but it must name a folder for the text-embedding cache: "
            f"point it at a folder (it is created if missing) or unset it."
        )
    return base / "text"


def default_limit_bytes() -> int:
    """The disk cache's size limit from ``$WAN_CORE_TEXT_CACHE_MB`` (0 = no disk cache)."""
    text = os.environ.get(LIMIT_ENV)
    if not text:
        return DEFAULT_LIMIT_MB * 2**20
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = float("nan")
    if not megabytes >= 0 or megabytes == float("inf"):
        raise InputError(f"{LIMIT_ENV}={text!r} must be a size in megabytes (0 or more), e.g. {DEFAULT_LIMIT_MB}.")
    return int(megabytes * 2**20)


def cache_key(*parts: str) -> str:
    """sha256 hex digest of the parts (joined unambiguously)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", errors="surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class EmbeddingCache:
    """Key -> float32 CPU tensor [L, C]; memory LRU in front of an optional, size-limited disk folder.

    ``max_bytes``: the folder's limit (None: :func:`default_limit_bytes`; 0: no disk writes).
    """

    def __init__(self, folder: Path | None, max_items: int = 256, max_bytes: int | None = None) -> None:
        self.folder = folder
        self.max_items = max_items
        self.max_bytes = default_limit_bytes() if max_bytes is None else int(max_bytes)
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._warned = False

    def get(self, key: str) -> torch.Tensor | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        value = self._read_disk(key)
        if value is not None:
            self._remember(key, value)
        return value

    def put(self, key: str, value: torch.Tensor) -> torch.Tensor:
        """Store ``value`` (as float32 on CPU) in memory and on disk; returns the stored tensor.

        Raises NonFiniteError (and stores nothing) when ``value`` holds NaN/Inf.
        """
        value = value.detach().to("cpu", torch.float32).contiguous()
        if not all_finite(value):
            raise NonFiniteError(
                "The umT5 text encoder produced NaN/Inf for this prompt (nothing was cached). Likely causes: "
                "fp16 overflow (umT5 needs bf16 or fp32: pass another dtype), or a damaged text encoder file "
                "(re-download it)."
            )
        self._remember(key, value)
        if self.folder is not None and self.max_bytes > 0:
            self._write_disk(self.folder, key, value)
        return value

    def _remember(self, key: str, value: torch.Tensor) -> None:
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_items:
            self._memory.popitem(last=False)

    @staticmethod
    def _path(folder: Path, key: str) -> Path:
        return folder / key[:2] / f"{key}.safetensors"

    def _read_disk(self, key: str) -> torch.Tensor | None:
        if self.folder is None:
            return None
        path = self._path(self.folder, key)
        if not path.is_file():
            return None
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            value = load_file(str(path))[TENSOR_NAME]
        except (OSError, KeyError, SafetensorError) as exc:
            log.warning("Ignoring unreadable text-embedding cache file %s (%s)", path, exc)
            return None
        if not all_finite(value):
            log.warning("Deleting text-embedding cache file %s: it holds NaN/Inf; the prompt is encoded again.", path)
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # LRU: a hit makes the file the newest
        except OSError:
            pass
        return value

    def _write_disk(self, folder: Path, key: str, value: torch.Tensor) -> None:
        from safetensors.torch import save_file

        path = self._path(folder, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                save_file({TENSOR_NAME: value}, str(tmp))
            evict_lru(folder, self.max_bytes, keep=path)
        except OSError as exc:  # a read-only or full disk must not break generation
            if not self._warned:
                log.warning("Could not write the text-embedding cache file %s (%s); caching in memory only.", path, exc)
                self._warned = True


def evict_lru(folder: Path, max_bytes: int, keep: Path | None = None) -> int:
    """Delete the least recently used cache files until ``folder`` holds at most ``max_bytes``; returns
    the number deleted. Stale ``.partial`` files of crashed writers are removed on the way."""
    entries: list[tuple[float, int, Path]] = []
    now = time.time()
    for path in folder.glob("*/*.safetensors"):
        try:
            info = path.stat()
        except OSError:  # removed by another process meanwhile
            continue
        if PARTIAL_MARK in path.name:
            if now - info.st_mtime > STALE_PARTIAL_S:
                path.unlink(missing_ok=True)
            continue
        entries.append((info.st_mtime, info.st_size, path))
    total = sum(size for _mtime, size, _path in entries)
    deleted = 0
    for _mtime, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if keep is not None and path == keep:
            continue
        path.unlink(missing_ok=True)
        total -= size
        deleted += 1
    return deleted
