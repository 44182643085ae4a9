"""Embedding cache: the same (encoder identity, cleaned prompt) is encoded once.

Two levels: an in-memory LRU per encoder object, and ``<hash>.safetensors`` files in a
cache folder that outlive the process. The key hashes everything the embedding depends
on (encoder file identity = path + size + mtime, tokenizer identity, compute dtype,
token limit, cleaned prompt), so a changed file simply misses.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CACHE_ENV = "WAN_CORE_CACHE"
TENSOR_NAME = "embedding"


def default_cache_dir() -> Path:
    """``$WAN_CORE_CACHE/text`` when that variable is set, else ``~/.cache/wan_core/text``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "wan_core"
    return base / "text"


def cache_key(*parts: str) -> str:
    """sha256 hex digest of the parts (joined unambiguously)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class EmbeddingCache:
    """Key -> float32 CPU tensor [L, C]; memory LRU in front of an optional disk folder."""

    def __init__(self, folder: Path | None, max_items: int = 256) -> None:
        self.folder = folder
        self.max_items = max_items
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()

    def get(self, key: str) -> torch.Tensor | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        value = self._read_disk(key)
        if value is not None:
            self._remember(key, value)
        return value

    def put(self, key: str, value: torch.Tensor) -> torch.Tensor:
        """Store ``value`` (as float32 on CPU) in memory and on disk; returns the stored tensor."""
        value = value.detach().to("cpu", torch.float32).contiguous()
        self._remember(key, value)
        if self.folder is not None:
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
            return load_file(str(path))[TENSOR_NAME]
        except (OSError, KeyError, SafetensorError) as exc:
            log.warning("Ignoring unreadable text-embedding cache file %s (%s)", path, exc)
            return None

    def _write_disk(self, folder: Path, key: str, value: torch.Tensor) -> None:
        from safetensors.torch import save_file

        path = self._path(folder, key)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({TENSOR_NAME: value}, str(tmp))
            os.replace(tmp, path)
        except OSError as exc:  # a read-only or full disk must not break generation
            log.warning("Could not write the text-embedding cache file %s (%s)", path, exc)
            tmp.unlink(missing_ok=True)
