"""Workflow helpers for tests and for building the shipped graphs.

* :class:`GraphBuilder` writes ComfyUI editor ("UI") format workflows from node definitions.
* :func:`ui_to_api` converts a UI workflow to the API format queued through ``/prompt``,
  using each node's INPUT_TYPES for the widget order (as ComfyUI's frontend does, including
  the extra ``control_after_generate`` value after a seed and the trailing ``upload`` button value of
  LoadImage / Wan Load Video).
* :func:`validate_ui` checks node types, link types, widget counts, order and ranges.
* :func:`execute_api` runs an API graph through the node classes in topological order.

ComfyUI's own nodes the workflows use (LoadImage, Note, MarkdownNote) get small standalone
stand-ins here, with the same inputs and outputs.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
API_DIR = WORKFLOWS / "api"
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
VIRTUAL_NODES = ("Note", "MarkdownNote")
SEED_NAMES = ("seed", "noise_seed")
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
UPLOAD_VALUE = "image"  # the upload button's value, serialised by the editor for images and videos alike


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


NATIVE_NODES = {"LoadImage": LoadImage, "Note": Note, "MarkdownNote": MarkdownNote}
NATIVE_DISPLAY_NAMES = {"LoadImage": "Load Image", "Note": "Note", "MarkdownNote": "Markdown Note"}


def display_name(node_type: str) -> str:
    """The editor's default node title: the display name (ours from NODE_DISPLAY_NAME_MAPPINGS)."""
    import nodes

    return nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node_type) or NATIVE_DISPLAY_NAMES.get(node_type, node_type)


def node_definitions() -> dict[str, type]:
    """Our node classes plus the native stand-ins, by node type name."""
    import nodes

    return {**nodes.NODE_CLASS_MAPPINGS, **NATIVE_NODES}


# --------------------------------------------------------------------------- input specs


def _input_kind(spec: tuple) -> str:
    kind = spec[0]
    return "COMBO" if isinstance(kind, (list, tuple)) else str(kind)


def _options(spec: tuple) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def all_inputs(cls: type) -> list[tuple[str, tuple, bool]]:
    """(name, spec, required) of every declared input, in declaration order (required first)."""
    types = cls.INPUT_TYPES()
    out = [(n, s, True) for n, s in types.get("required", {}).items()]
    return out + [(n, s, False) for n, s in types.get("optional", {}).items()]


def is_widget(spec: tuple) -> bool:
    return _input_kind(spec) in WIDGET_TYPES and not _options(spec).get("forceInput")


def widget_specs(cls: type) -> list[tuple[str, tuple]]:
    return [(name, spec) for name, spec, _ in all_inputs(cls) if is_widget(spec)]


def socket_specs(cls: type) -> list[tuple[str, tuple, bool]]:
    return [(name, spec, req) for name, spec, req in all_inputs(cls) if not is_widget(spec)]


def _extra_values(name: str, spec: tuple) -> list:
    """Values the frontend stores right after a widget's own: the seed's control_after_generate."""
    opts = _options(spec)
    if _input_kind(spec) == "INT" and (name in SEED_NAMES or opts.get("control_after_generate")):
        return ["fixed"]
    return []


def has_upload_button(cls: type) -> bool:
    """Whether the editor adds an upload button: a required combo flagged image/video/animated_image_upload.

    The frontend (uploadImage.ts) adds a required ``upload`` input that is not in ``input_order``, so its
    widget comes after every other widget, optional ones included, and serialises its value ``"image"``.
    """
    return any(
        req and _input_kind(spec) == "COMBO" and any(_options(spec).get(k) for k in UPLOAD_OPTIONS)
        for _name, spec, req in all_inputs(cls)
    )


def _upload_values(cls: type) -> list:
    return [UPLOAD_VALUE] if has_upload_button(cls) else []


def ui_widget_values(cls: type, values: dict[str, Any]) -> list:
    """widgets_values (editor order, with the frontend's extra values) for the given named values."""
    out: list = []
    for name, spec in widget_specs(cls):
        out.append(values[name] if name in values else _options(spec).get("default", _first_choice(spec)))
        out.extend(_extra_values(name, spec))
    return out + _upload_values(cls)


def _first_choice(spec: tuple):
    return spec[0][0] if _input_kind(spec) == "COMBO" and spec[0] else None


def named_widget_values(cls: type, widgets_values: list) -> dict[str, Any]:
    """Inverse of :func:`ui_widget_values`: {name: value}; raises ValueError on a count mismatch."""
    values, i = {}, 0
    for name, spec in widget_specs(cls):
        if i >= len(widgets_values):
            raise ValueError(f"{cls.__name__}: widgets_values too short at {name!r}: {widgets_values}")
        values[name] = widgets_values[i]
        i += 1 + len(_extra_values(name, spec))
    i += len(_upload_values(cls))
    if i != len(widgets_values):
        raise ValueError(f"{cls.__name__}: {len(widgets_values)} widget values, expected {i}: {widgets_values}")
    return values


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
    for _name, spec in widget_specs(cls):
        height += 110 if _options(spec).get("multiline") else 26
        height += 26 * len(_extra_values(_name, spec))
    if has_upload_button(cls):
        height += 26
    if getattr(cls, "OUTPUT_NODE", False) or has_upload_button(cls):
        height += 280  # room for the image / video preview
    return 360, height + (96 if cls.__name__ == "WanSampler" else 0)  # + the sigma plot (js)


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
    """The API-format prompt ({id: {inputs, class_type, _meta}}) for a UI workflow."""
    defs = defs or node_definitions()
    links = {lk[0]: lk for lk in workflow["links"]}
    api: dict[str, dict] = {}
    for node in sorted(workflow["nodes"], key=lambda n: n["id"]):
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) in (2, 4):
            continue
        cls = defs[node["type"]]
        inputs: dict[str, Any] = dict(named_widget_values(cls, node.get("widgets_values", [])))
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                link = links[inp["link"]]
                inputs[inp["name"]] = [str(link[1]), link[2]]
        title = node.get("title") or display_name(node["type"])  # the editor's default title
        api[str(node["id"])] = {"inputs": inputs, "class_type": node["type"], "_meta": {"title": title}}
    return api


# --------------------------------------------------------------------------- validation


def _check_value(name: str, spec: tuple, value: Any) -> str | None:
    kind, opts = _input_kind(spec), _options(spec)
    if kind == "COMBO":
        return None if value in spec[0] else f"{name}={value!r} not in {list(spec[0])[:8]}"
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
    for name, spec in widget_specs(cls):
        for extra, expected in zip(_extra_values(name, spec), _extra_after(node, cls, name)):
            if extra == "fixed" and expected not in ("fixed", "increment", "decrement", "randomize"):
                errors.append(f"{where}: control_after_generate value {expected!r} after {name}")
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


def _extra_after(node: dict, cls: type, name: str) -> list:
    i = 0
    for wname, spec in widget_specs(cls):
        n_extra = len(_extra_values(wname, spec))
        if wname == name:
            return node["widgets_values"][i + 1 : i + 1 + n_extra]
        i += 1 + n_extra
    return []


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
    return {nid: [v[0] for v in node["inputs"].values() if _is_link(v)] for nid, node in api.items()}


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def override_api(api: dict, values: dict[str, Any]) -> dict:
    """A copy of ``api`` with every widget input named in ``values`` replaced (e.g. width, steps)."""
    api = copy.deepcopy(api)
    for node in api.values():
        for name, value in values.items():
            if name in node["inputs"] and not _is_link(node["inputs"][name]):
                node["inputs"][name] = value
    return api


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
        kwargs = {k: (done[v[0]]["result"][v[1]] if _is_link(v) else v) for k, v in node["inputs"].items()}
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
