"""Atomic file output: a file appears at its path complete, or not at all.

Writers get a temporary path in the destination's own folder (so the final rename never crosses
a file system), write there, and on success the data is fsync'ed and renamed over the
destination in one step. On any failure, including KeyboardInterrupt (SIGINT) and the CLI's
SIGTERM handler, the temporary file is removed and a file already at the destination is left
untouched. Only SIGKILL or a power cut can leave a ``.<name>.*.partial<suffix>`` file behind,
never a half-written file at the path itself.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

PARTIAL_MARK = ".partial"


def temp_path_for(path: Path) -> Path:
    """A new, unused hidden name next to ``path`` that keeps its suffix (writers pick formats by suffix)."""
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}{PARTIAL_MARK}{path.suffix}")


def _create_empty(path: Path) -> None:
    """Create ``path`` exclusively with the default permissions (0666 minus the umask, as open() would)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Make a rename durable; folders cannot be opened for fsync on Windows (then a no-op)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; afterwards it replaces ``path`` (fsync'ed), or is removed on error."""
    final = Path(path)
    tmp = temp_path_for(final)
    _create_empty(tmp)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_folder(final.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (manifests, small JSON files)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
