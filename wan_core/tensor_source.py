"""Lazy tensors: where each tensor of a checkpoint lives, and a read-only mapping that reads one on demand.

The lowest layer of checkpoint reading, shared by the file formats (safetensors and torch files in
:mod:`wan_core.checkpoints`, GGUF in :mod:`wan_core.quant.gguf_file`): keys, shapes and dtypes are known
without reading any tensor data, and each tensor is read from disk only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import CheckpointError


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives and what it is, known without reading its data.

    ``ggml_type`` names the GGUF block type (Q4_K, ...) when the bytes are packed blocks:
    reading the tensor then gives its dequantised values (``dtype``, ``shape``), and
    :func:`wan_core.quant.gguf_file.read_packed` the packed bytes for loaders that keep them.
    """

    shape: tuple[int, ...]
    dtype: torch.dtype
    path: Path | None = None
    offset: int = 0
    nbytes: int = 0
    ggml_type: str | None = None


class TensorSource(Mapping):
    """A lazy, read-only mapping of tensor names to tensors.

    ``source[key]`` reads the tensor (from disk for files); ``source.info(key)``
    gives shape and dtype without reading. ``config`` holds a folder's
    ``config.json`` (or None); ``metadata`` the safetensors header metadata;
    ``identity`` a string that changes when the underlying files change (for caches).
    """

    def __init__(
        self,
        infos: dict[str, TensorInfo],
        reader: Callable[[str], torch.Tensor],
        *,
        config: dict | None = None,
        metadata: dict[str, str] | None = None,
        identity: str = "",
        description: str = "state dict",
    ) -> None:
        self._infos = infos
        self._reader = reader
        self.config = config
        self.metadata = metadata or {}
        self.identity = identity
        self.description = description

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._infos:
            raise KeyError(key)
        return self._reader(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def __contains__(self, key: object) -> bool:
        return key in self._infos

    def info(self, key: str) -> TensorInfo:
        return self._infos[key]

    def shape(self, key: str) -> tuple[int, ...]:
        return self._infos[key].shape

    def dtype(self, key: str) -> torch.dtype:
        return self._infos[key].dtype

    def renamed(self, rename: Callable[[str], str | None]) -> TensorSource:
        """A view with keys mapped by ``rename`` (None drops the key); no data is read."""
        mapping: dict[str, str] = {}
        for old in self._infos:
            new = rename(old)
            if new is None:
                continue
            if new in mapping:
                raise CheckpointError(
                    f"Two tensors map to the same name {new!r} ({mapping[new]!r} and {old!r}) in "
                    f"{self.description}: the file mixes two layouts. Re-export it in one layout."
                )
            mapping[new] = old
        infos = {new: self._infos[old] for new, old in mapping.items()}
        return TensorSource(
            infos,
            lambda key: self._reader(mapping[key]),
            config=self.config,
            metadata=self.metadata,
            identity=self.identity,
            description=self.description,
        )

    def subset(self, keys: Iterable[str]) -> TensorSource:
        wanted = set(keys)
        return self.renamed(lambda k: k if k in wanted else None)

    def with_prefix_stripped(self, prefix: str, others: Callable[[str], str | None] | None = None) -> TensorSource:
        """Keys starting with ``prefix`` lose it; ``others`` names what the remaining keys become
        (None: they are dropped). The one implementation of prefix stripping."""
        n = len(prefix)
        return self.renamed(lambda k: k[n:] if k.startswith(prefix) else (others(k) if others else None))


def read_tensor(info: TensorInfo) -> torch.Tensor:
    """Read one tensor's bytes straight into a new CPU tensor."""
    buf = torch.empty(info.nbytes, dtype=torch.uint8)
    if info.nbytes:
        if info.path is None:
            raise CheckpointError("This tensor lives in memory, not in a file; read it from its TensorSource.")
        with open(info.path, "rb") as f:
            f.seek(info.offset)
            got = f.readinto(buf.numpy().data)
        if got != info.nbytes:
            raise CheckpointError(
                f"{info.path} is truncated: expected {info.nbytes} bytes at offset {info.offset}, "
                f"got {got}. Download the file again."
            )
    return buf.view(info.dtype).reshape(info.shape)


def file_identity(paths: list[Path]) -> str:
    """A string that changes when any of ``paths`` is replaced or rewritten (path, size, mtime): the caches' key."""
    parts = []
    for p in paths:
        st = p.stat()
        parts.append(f"{p.resolve()}:{st.st_size}:{int(st.st_mtime_ns)}")
    return "|".join(parts)
