"""The batch manifest (``OUT/manifest.jsonl``) and atomic file writes.

One JSON object per line, appended whole with one ``write`` and an ``fsync``: a Ctrl-C or a crash can at
worst leave a torn last line, which reading ignores and the next append cuts off. Each line carries a
job id and a ``status``: ``queued`` (written *before* the prompt is posted, with its server and prompt
id, so a rerun can find it), ``completed`` (outputs with sha256, after every file is in place) or
``failed``. A job's state is its last line.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

QUEUED, COMPLETED, FAILED = "queued", "completed", "failed"
MANIFEST_NAME = "manifest.jsonl"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: Path) -> Iterator[IO[bytes]]:
    """Write ``path`` through a temp file in the same folder, fsync, then rename over it (never half there)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Manifest:
    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / MANIFEST_NAME

    def records(self) -> list[dict]:
        """Every whole line (a torn last line, from an interrupted write, is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_bytes().split(b"\n"):
            try:
                record = json.loads(line) if line.strip() else None
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "job" in record:
                out.append(record)
        return out

    def latest(self) -> dict[str, dict]:
        """{job id: its last record}."""
        return {r["job"]: r for r in self.records()}

    def _cut_torn_tail(self) -> None:
        """Cut an interrupted last line; reads only the file's end unless that line is torn (appends stay O(1))."""
        if not self.path.exists():
            return
        with open(self.path, "r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            handle.seek(0)
            handle.truncate(handle.read().rfind(b"\n") + 1)

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        self._cut_torn_tail()
        data = (
            json.dumps({**record, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, ensure_ascii=False) + "\n"
        ).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            _fsync_dir(self.path.parent)


def outputs_present(record: dict, out_dir: Path) -> bool:
    """Whether every output file a completed record lists is still there."""
    return all((Path(out_dir) / o["file"]).is_file() for o in record.get("outputs", []))
