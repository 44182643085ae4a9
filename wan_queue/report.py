"""Readable messages for what the server reports: validation errors per node and input, missing model
files with the model folder they belong in, and errors raised while a prompt ran."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath

from .client import ComfyServer
from .convert import combo_choices, declared_inputs
from .errors import QueueError

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx")
NO_MODEL = ("none", "None", "")


def _node_label(prompt: dict, node_id: str, class_type: str | None = None) -> str:
    node = prompt.get(str(node_id), {})
    class_type = class_type or node.get("class_type", "?")
    title = node.get("_meta", {}).get("title")
    return f"node {node_id} ({class_type}{f', {title!r}' if title and title != class_type else ''})"


def _input_spec(object_info: dict, class_type: str, name: str):
    info = object_info.get(class_type)
    return next((spec for n, spec, _req in declared_inputs(info) if n == name), None) if info else None


def model_folder(folders: dict[str, list[str]], choices: list, input_name: str) -> str | None:
    """The model folder a combo lists: the one sharing most files with its choices; when the folder is
    empty (nothing to compare), the folder named in the input name (``vae_name`` -> ``vae``)."""
    offered = {c for c in choices if isinstance(c, str) and c not in NO_MODEL}
    overlap = {f: len(offered & set(files)) for f, files in folders.items()}
    best = max(overlap, key=overlap.get, default=None)
    if best is not None and overlap[best] > 0:
        return best
    named = [f for f in folders if f.rstrip("s") and f.rstrip("s") in input_name]
    return max(named, key=len, default=None)


async def _missing_model_hint(server: ComfyServer, object_info: dict, class_type: str, error: dict) -> str | None:
    extra = error.get("extra_info") or {}
    name, value = extra.get("input_name"), extra.get("received_value")
    spec = _input_spec(object_info, class_type, name) if name else None
    if error.get("type") != "value_not_in_list" or spec is None or not isinstance(value, str):
        return None
    try:
        folder = model_folder(await server.model_folders(), combo_choices(spec), name)
    except (QueueError, ValueError) as exc:
        log.debug("model folders of %s: %s", server.url, exc)
        folder = None
    if folder is None:
        if PurePosixPath(value).suffix.lower() not in MODEL_SUFFIXES:
            return None
        return f"model file {value!r} is missing on {server.url}: put it into the model folder this loader reads"
    return f"model file {value!r} is missing on {server.url}: put it into ComfyUI's models/{folder}/ folder"


async def describe_rejection(server: ComfyServer, body: dict, prompt: dict, object_info: dict) -> str:
    """The server's 400 answer to /prompt, one line per node and input, with missing-model hints."""
    error = body.get("error") or {}
    message = error.get("message", "rejected") if isinstance(error, dict) else str(error)
    lines = [f"{server.url} rejected the workflow: {message}"]
    node_errors = body.get("node_errors") or {}
    if not node_errors and isinstance(error, dict) and error.get("details"):
        lines.append(f"  {error['details']}")
    for node_id, entry in node_errors.items():
        label = _node_label(prompt, node_id, entry.get("class_type"))
        for err in entry.get("errors", []):
            name = (err.get("extra_info") or {}).get("input_name")
            where = f"{label} input {name!r}" if name else label
            lines.append(f"  {where}: {err.get('message', '')}: {err.get('details', '')}")
            hint = await _missing_model_hint(server, object_info, entry.get("class_type", ""), err)
            if hint:
                lines.append(f"    -> {hint}")
    return "\n".join(lines)


def describe_execution_error(entry: dict, prompt: dict) -> str:
    """The reason a queued prompt failed, from its /history entry (execution_error / interrupted)."""
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            label = _node_label(prompt, data.get("node_id"), data.get("node_type"))
            return f"{label} raised {data.get('exception_type')}: {data.get('exception_message', '').strip()}"
        if kind == "execution_interrupted":
            return f"interrupted on the server at {_node_label(prompt, data.get('node_id'), data.get('node_type'))}"
    return f"the server reports status {entry.get('status', {}).get('status_str')!r}"
