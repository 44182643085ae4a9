"""One live copy per model file: loader nodes that read the same file the same way share the object.

ComfyUI caches each node's output separately, so two loader nodes on one file (or one
loader re-run after a widget that does not change the weights) would otherwise hold two
copies in RAM. The cache holds its objects weakly: a model lives exactly as long as some
node output (or run) still uses it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")

_live: weakref.WeakValueDictionary[tuple, object] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def file_identity(path: str) -> tuple[str, int, int]:
    """(real path, size, mtime): a changed or replaced file is a different model."""
    real = os.path.realpath(path)
    stat = os.stat(real)
    return real, stat.st_size, stat.st_mtime_ns


def shared(key: tuple[Hashable, ...], load: Callable[[], T]) -> T:
    """The live object loaded for ``key``, or ``load()`` (remembered weakly under ``key``)."""
    with _lock:
        found = _live.get(key)
    if found is not None:
        return found  # type: ignore[return-value]
    obj = load()
    with _lock:
        _live[key] = obj
    return obj


def live_count() -> int:
    """Objects currently shared (for tests and the memory report)."""
    return len(_live)
