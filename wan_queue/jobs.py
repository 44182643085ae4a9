"""Jobs: the resolved API graph of one parameter set, its local files, and its id.

The job id is a hash of everything that makes the outputs differ: the resolved graph (node types and
inputs, titles left out) with every local file replaced by a name carrying its content hash. The same
command therefore gives the same ids on every run, which is what resume keys on.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ParameterError
from .params import Params, apply_params

log = logging.getLogger(__name__)

INPUTS_DIR = Path(__file__).resolve().parents[1] / "workflows" / "inputs"
JOB_ID_CHARS = 16


@dataclass(frozen=True)
class LocalFile:
    """A file uploaded to each server before the job is queued, under a content-addressed name."""

    path: Path
    sha256: str
    upload_name: str


@dataclass(frozen=True)
class Job:
    id: str
    params: Params
    prompt: dict
    files: tuple[LocalFile, ...] = ()

    def title_of(self, node_id: str | None) -> str:
        node = self.prompt.get(str(node_id), {})
        return node.get("_meta", {}).get("title") or node.get("class_type") or str(node_id)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _local_path(value: str, inputs_dir: Path) -> Path | None:
    """``@path`` (relative to the working directory), or a bare name of a file in workflows/inputs/."""
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        if not path.is_file():
            raise ParameterError(f"{value!r}: no such local file ({path.resolve()}); '@' marks a file to upload")
        return path
    if value and "/" not in value and "\\" not in value and (inputs_dir / value).is_file():
        return inputs_dir / value
    return None


class FileResolver:
    """Replaces local-file values by their upload names; hashes each file once."""

    def __init__(self, inputs_dir: Path = INPUTS_DIR):
        self.inputs_dir = inputs_dir
        self._cache: dict[Path, LocalFile] = {}

    def local_file(self, path: Path) -> LocalFile:
        key = path.resolve()
        if key not in self._cache:
            sha = file_sha256(key)
            self._cache[key] = LocalFile(key, sha, f"{key.stem}-{sha[:12]}{key.suffix}")
        return self._cache[key]

    def resolve(self, api: dict) -> tuple[dict, tuple[LocalFile, ...]]:
        """``api`` (a graph the caller owns, e.g. apply_params' copy) with local files replaced by upload names."""
        files: dict[str, LocalFile] = {}
        for node in api.values():
            for name, value in node["inputs"].items():
                path = _local_path(value, self.inputs_dir) if isinstance(value, str) else None
                if path is not None:
                    local = self.local_file(path)
                    node["inputs"][name] = local.upload_name
                    files[local.upload_name] = local
        return api, tuple(files[k] for k in sorted(files))


def canonical_graph(prompt: dict) -> dict[str, Any]:
    """What determines the outputs: class types and inputs per node (titles are display only)."""
    return {nid: {"class_type": n["class_type"], "inputs": n["inputs"]} for nid, n in prompt.items()}


def job_id(prompt: dict) -> str:
    text = json.dumps(canonical_graph(prompt), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:JOB_ID_CHARS]


def make_jobs(
    api: dict, param_sets: list[Params], object_info: dict | None = None, resolver: FileResolver | None = None
) -> list[Job]:
    """One job per parameter set; parameter sets that resolve to the same graph become one job."""
    resolver = resolver or FileResolver()
    jobs: dict[str, Job] = {}
    for params in param_sets:
        prompt, files = resolver.resolve(apply_params(api, params, object_info))
        job = Job(job_id(prompt), params, prompt, files)
        if job.id in jobs:
            log.warning(
                "parameters %s give the same graph as %s: queued once (job %s)", params, jobs[job.id].params, job.id
            )
            continue
        jobs[job.id] = job
    return list(jobs.values())
