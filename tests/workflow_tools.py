"""Workflow helpers for tests and for building the shipped graphs.

* :class:`GraphBuilder` writes ComfyUI editor ("UI") format workflows from node definitions.
* :func:`ui_to_api` converts a UI workflow to the API format queued through ``/prompt``. The editor's
  widget rules (order, the ``control_after_generate`` value after a seed, the trailing ``upload`` button
  value of LoadImage / Wan Load Video) live in :mod:`wan_queue.convert`, which applies them to
  ``/object_info`` entries; :func:`object_info` gives those entries for our node classes, as ComfyUI
  serves them.
* :func:`validate_ui` checks node types, link types, widget counts, order and ranges.
* :func:`execute_api` runs an API graph through the node classes in topological order.

ComfyUI's own nodes the workflows use (LoadImage, Note, MarkdownNote) get small standalone
stand-ins here, with the same inputs, outputs and display names.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wan_queue import convert
from wan_queue.convert import VIRTUAL_NODES, is_link  # noqa: F401  (VIRTUAL_NODES: re-exported for the tests)
from wan_queue.errors import WorkflowError
from wan_queue.params import apply_params

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
API_DIR = WORKFLOWS / "api"
CONTROL_DEFAULT = "fixed"  # the control value our graphs ship with: a workflow reruns reproducibly


# --------------------------------------------------------------------------- native stand-ins


class LoadImage:
    """ComfyUI's LoadImage: an image from the input folder -> (IMAGE [1,H,W,3], MASK [1,H,W])."""

    CATEGORY = "image"
    FUNCTION = "load_image"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("IMAGE", "MASK")

    @classmethod
    def INPUT_TYPES(cls):
        from nodes import comfy_bridge

        files = comfy_bridge.input_files((".png", ".jpg", ".jpeg", ".webp"))
        return {"required": {"image": (files, {"image_upload": True, "tooltip": "Image file."})}}

    def load_image(self, image):
        import torch

        from nodes import comfy_bridge
        from wan_core.video_io import load_image

        pixels = load_image(comfy_bridge.input_path(image))
        return (pixels, torch.zeros(pixels.shape[:3]))


class Note:
    CATEGORY = "utils"
    FUNCTION = ""
    RETURN_TYPES = ()

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True, "tooltip": "Note text."})}}


class MarkdownNote(Note):
    pass


class PreviewImage:
    """ComfyUI's PreviewImage (shows IMAGE on the node); standalone it only records the shape."""

    CATEGORY = "image"
    FUNCTION = "save_images"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The images to preview."})}}

    def save_images(self, images):
        return {"ui": {"preview_shape": [list(images.shape)]}, "result": ()}


NATIVE_NODES = {"LoadImage": LoadImage, "Note": Note, "MarkdownNote": MarkdownNote, "PreviewImage": PreviewImage}
NATIVE_DISPLAY_NAMES = {
    "LoadImage": "Load Image",
    "Note": "Note",
    "MarkdownNote": "Markdown Note",
    "PreviewImage": "Preview Image",
}


def display_name(node_type: str) -> str:
    """The editor's default node title: the display name (ours from NODE_DISPLAY_NAME_MAPPINGS)."""
    import nodes

    return nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node_type) or NATIVE_DISPLAY_NAMES.get(node_type, node_type)


def node_definitions() -> dict[str, type]:
    """Our node classes plus the native stand-ins, by node type name."""
    import nodes

    return {**nodes.NODE_CLASS_MAPPINGS, **NATIVE_NODES}


def _display_names() -> dict[str, str]:
    import nodes

    return {**nodes.NODE_DISPLAY_NAME_MAPPINGS, **NATIVE_DISPLAY_NAMES}


# --------------------------------------------------------------------------- input specs


def node_info(cls: type, node_type: str | None = None) -> dict:
    """The ``/object_info`` entry ComfyUI serves for a node class (JSON, so tuples are lists)."""
    node_type = node_type or cls.__name__
    sections = {k: v for k, v in cls.INPUT_TYPES().items() if k in ("required", "optional")}
    return {
        "input": json.loads(json.dumps(sections)),
        "input_order": {k: list(v) for k, v in sections.items()},
        "output": list(cls.RETURN_TYPES),
        "output_name": list(_return_names(cls)),
        "name": node_type,
        "display_name": _display_names().get(node_type, node_type),
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }


def object_info(defs: dict[str, type] | None = None) -> dict[str, dict]:
    """``/object_info`` for node classes (default: ours plus the native stand-ins)."""
    return {name: node_info(cls, name) for name, cls in (defs or node_definitions()).items()}


def _input_kind(spec) -> str:
    return convert.input_kind(spec)


def _options(spec) -> dict:
    return convert.input_options(spec)


def all_inputs(cls: type) -> list[tuple[str, list, bool]]:
    """(name, spec, required) of every declared input, in declaration order (required first)."""
    return convert.declared_inputs(node_info(cls))


def widget_specs(cls: type) -> list[tuple[str, list]]:
    return [(name, spec) for name, spec, _ in all_inputs(cls) if convert.is_widget_input(spec)]


def socket_specs(cls: type) -> list[tuple[str, list, bool]]:
    return [(name, spec, req) for name, spec, req in all_inputs(cls) if not convert.is_widget_input(spec)]


def _default(spec):
    choices = convert.combo_choices(spec) if _input_kind(spec) == "COMBO" else []
    return _options(spec).get("default", choices[0] if choices else None)


def ui_widget_values(cls: type, values: dict[str, Any]) -> list:
    """widgets_values (editor order, with the editor's extra values) for the given named values."""
    out: list = []
    for name, spec in convert.widget_slots(node_info(cls)):
        if spec is None:
            out.append(convert.UPLOAD_VALUE if name == "upload" else CONTROL_DEFAULT)
        else:
            out.append(values[name] if name in values else _default(spec))
    return out


def named_widget_values(cls: type, widgets_values: list) -> dict[str, Any]:
    """Inverse of :func:`ui_widget_values`: {name: value}; raises ValueError on a count mismatch."""
    try:
        return convert.named_widget_values(node_info(cls), widgets_values, cls.__name__)
    except WorkflowError as exc:
        raise ValueError(str(exc)) from None


# --------------------------------------------------------------------------- builder


class GraphBuilder:
    """Builds a UI-format workflow: ``add(type, widget values, inputs={name: (node_id, slot)})``."""

    def __init__(self, defs: dict[str, type] | None = None):
        self.defs = defs or node_definitions()
        self.nodes: list[dict] = []
        self.links: list[list] = []

    def add(
        self,
        node_type: str,
        values: dict | None = None,
        inputs: dict | None = None,
        title: str | None = None,
        size: tuple[int, int] | None = None,
    ) -> int:
        cls = self.defs[node_type]
        size = size or default_size(cls)
        node_id = len(self.nodes) + 1
        node = {
            "id": node_id,
            "type": node_type,
            "pos": [0, 0],
            "size": list(size),
            "flags": {},
            "order": 0,
            "mode": 0,
            "inputs": [],
            "outputs": [],
            "properties": {"Node name for S&R": node_type},
            "widgets_values": ui_widget_values(cls, values or {}),
        }
        if title:
            node["title"] = title
        for slot, (rtype, rname) in enumerate(zip(cls.RETURN_TYPES, _return_names(cls))):
            node["outputs"].append({"name": rname, "type": rtype, "links": [], "slot_index": slot})
        self.nodes.append(node)
        for name, spec, _req in socket_specs(cls):
            node["inputs"].append({"name": name, "type": _input_kind(spec), "link": None})
        for name, (src, slot) in (inputs or {}).items():
            self.connect(src, slot, node_id, name)
        return node_id

    def connect(self, src: int, slot: int, dst: int, name: str) -> None:
        link_id = len(self.links) + 1
        src_node, dst_node = self.nodes[src - 1], self.nodes[dst - 1]
        out = src_node["outputs"][slot]
        target = next(i for i, inp in enumerate(dst_node["inputs"]) if inp["name"] == name)
        dst_node["inputs"][target]["link"] = link_id
        out["links"].append(link_id)
        self.links.append([link_id, src, slot, dst, target, out["type"]])

    def build(self, title: str) -> dict:
        order = topological_order({n["id"]: [lk[1] for lk in self.links if lk[3] == n["id"]] for n in self.nodes})
        depth: dict[int, int] = {}
        for node_id in order:
            parents = [lk[1] for lk in self.links if lk[3] == node_id]
            depth[node_id] = 1 + max((depth[p] for p in parents), default=-1)
        next_y: dict[int, int] = {}  # per column: where the next node starts
        for index, node_id in enumerate(order):
            node = self.nodes[node_id - 1]
            node["order"] = index
            col = depth[node_id]
            node["pos"] = [40 + 420 * col, next_y.get(col, 40)]
            next_y[col] = node["pos"][1] + node["size"][1] + 60
        return {
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": self.nodes,
            "links": self.links,
            "groups": [],
            "config": {},
            "extra": {"title": title, "ds": {"scale": 0.8, "offset": [0, 0]}},
            "version": 0.4,
        }


def default_size(cls: type) -> tuple[int, int]:
    """A node size that fits its slots and widgets (multiline text boxes get more room)."""
    slots = max(len(socket_specs(cls)), len(cls.RETURN_TYPES))
    height = 36 + 22 * slots
    for _name, spec in convert.widget_slots(node_info(cls)):
        height += 110 if spec is not None and _options(spec).get("multiline") else 26
    upload = convert.has_upload_button(node_info(cls))
    if getattr(cls, "OUTPUT_NODE", False) or upload:
        height += 280  # room for the image / video preview
    return 360, height + (108 if cls.__name__ == "WanSampler" else 0)  # + the sigma plot and step marks (js)


def _return_names(cls: type) -> tuple:
    return tuple(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES)


def topological_order(parents: dict[int, Iterable[int]]) -> list[int]:
    """Node ids so that every node comes after its parents (Kahn; ties by id). Raises on cycles."""
    pending = {k: set(v) for k, v in parents.items()}
    order: list[int] = []
    while pending:
        ready = sorted(k for k, v in pending.items() if not v - set(order))
        if not ready:
            raise ValueError(f"cycle among nodes {sorted(pending)}")
        for k in ready:
            order.append(k)
            del pending[k]
    return order


# --------------------------------------------------------------------------- conversion


def ui_to_api(workflow: dict, defs: dict[str, type] | None = None) -> dict:
    """The API-format prompt ({id: {inputs, class_type, _meta}}) for a UI workflow (wan_queue's converter)."""
    return convert.ui_to_api(workflow, object_info(defs))


# --------------------------------------------------------------------------- validation


def _check_value(name: str, spec: tuple, value: Any) -> str | None:
    kind, opts = _input_kind(spec), _options(spec)
    if kind == "COMBO":
        choices = convert.combo_choices(spec)
        return None if value in choices else f"{name}={value!r} not in {choices[:8]}"
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name}={value!r} is not a boolean"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{name}={value!r} is not a string"
    if kind == "INT" and (not isinstance(value, int) or isinstance(value, bool)):
        return f"{name}={value!r} is not an int"
    if kind == "FLOAT" and not (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ):
        return f"{name}={value!r} is not a finite number"
    lo, hi = opts.get("min", -math.inf), opts.get("max", math.inf)
    if not lo <= value <= hi:
        return f"{name}={value!r} outside [{lo}, {hi}]"
    return None


def validate_ui(workflow: dict, defs: dict[str, type] | None = None) -> list[str]:
    """Problems found in a UI workflow (empty list = valid)."""
    defs = defs or node_definitions()
    errors: list[str] = []
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for node in workflow["nodes"]:
        if node["type"] not in defs:
            errors.append(f"node {node['id']}: unknown type {node['type']!r}")
            continue
        errors += _validate_node(node, defs[node["type"]])
    for link in workflow["links"]:
        errors += _validate_link(link, nodes, defs)
    if workflow.get("last_node_id", 0) < max(nodes, default=0):
        errors.append("last_node_id is smaller than the largest node id")
    return errors


def _validate_node(node: dict, cls: type) -> list[str]:
    where = f"node {node['id']} ({node['type']})"
    try:
        values = named_widget_values(cls, node.get("widgets_values", []))
    except ValueError as exc:
        return [f"{where}: {exc}"]
    errors = [f"{where}: {msg}" for name, spec in widget_specs(cls) if (msg := _check_value(name, spec, values[name]))]
    for (name, _spec), value in zip(convert.widget_slots(node_info(cls)), node.get("widgets_values", [])):
        if name.endswith(".control_after_generate") and value not in convert.CONTROL_VALUES:
            errors.append(f"{where}: control_after_generate value {value!r} after {name.split('.')[0]}")
    connected = {i["name"]: i for i in node.get("inputs", [])}
    for name, spec, required in socket_specs(cls):
        inp = connected.get(name)
        if required and (inp is None or inp.get("link") is None):
            errors.append(f"{where}: required input {name!r} is not connected")
        if inp is not None and inp.get("type") not in (_input_kind(spec), "*"):
            errors.append(f"{where}: input {name!r} typed {inp.get('type')!r}, expected {_input_kind(spec)!r}")
    declared = {n for n, _s, _r in all_inputs(cls)}
    errors += [f"{where}: unknown input {n!r}" for n in connected if n not in declared]
    for slot, out in enumerate(node.get("outputs", [])):
        if slot >= len(cls.RETURN_TYPES) or out["type"] != cls.RETURN_TYPES[slot]:
            errors.append(f"{where}: output {slot} typed {out['type']!r}, expected {cls.RETURN_TYPES[slot : slot + 1]}")
    return errors


def _validate_link(link: list, nodes: dict, defs: dict) -> list[str]:
    link_id, src, slot, dst, dst_slot, ltype = link
    if src not in nodes or dst not in nodes:
        return [f"link {link_id}: unknown node {src} or {dst}"]
    src_cls, dst_node = defs.get(nodes[src]["type"]), nodes[dst]
    if src_cls is None or slot >= len(src_cls.RETURN_TYPES):
        return [f"link {link_id}: node {src} has no output {slot}"]
    if dst_slot >= len(dst_node.get("inputs", [])) or dst_node["inputs"][dst_slot].get("link") != link_id:
        return [f"link {link_id}: node {dst} input {dst_slot} does not point back to it"]
    if link_id not in nodes[src]["outputs"][slot].get("links", []):
        return [f"link {link_id}: not listed on node {src} output {slot}"]
    out_type, in_type = src_cls.RETURN_TYPES[slot], dst_node["inputs"][dst_slot]["type"]
    if not (ltype == out_type == in_type):
        return [f"link {link_id}: types differ: link {ltype!r}, output {out_type!r}, input {in_type!r}"]
    return []


# --------------------------------------------------------------------------- execution


def api_parents(api: dict) -> dict[str, list[str]]:
    return {nid: [v[0] for v in node["inputs"].values() if is_link(v)] for nid, node in api.items()}


def override_api(api: dict, values: dict[str, Any]) -> dict:
    """A copy of ``api`` with every widget input named in ``values`` replaced (e.g. width, steps), by the
    queue tool's ``--set`` rules; a name no node has is an error."""
    return apply_params(api, values)


def execute_api(api: dict, defs: dict[str, type] | None = None, workflow: dict | None = None) -> dict[str, Any]:
    """Run an API graph in topological order; returns {node id: {"result": tuple, "ui": dict | None}}.

    Runs under ``torch.inference_mode()`` as ComfyUI's executor does (loaded weights are then
    inference tensors, which catches code that would only fail inside ComfyUI).
    """
    import torch

    with torch.inference_mode():
        return _execute(api, defs or node_definitions(), workflow)


def _execute(api: dict, defs: dict[str, type], workflow: dict | None) -> dict[str, Any]:
    done: dict[str, Any] = {}
    for nid in topological_order(api_parents(api)):
        node = api[nid]
        cls = defs[node["class_type"]]
        kwargs = {k: (done[v[0]]["result"][v[1]] if is_link(v) else v) for k, v in node["inputs"].items()}
        hidden = cls.INPUT_TYPES().get("hidden", {})
        if "prompt" in hidden:
            kwargs["prompt"] = api
        if "extra_pnginfo" in hidden:
            kwargs["extra_pnginfo"] = {"workflow": workflow} if workflow else None
        out = getattr(cls(), cls.FUNCTION)(**kwargs)
        if isinstance(out, dict):
            done[nid] = {"result": tuple(out.get("result", ())), "ui": out.get("ui")}
        else:
            done[nid] = {"result": tuple(out), "ui": None}
    return done


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def dump_json(data: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
