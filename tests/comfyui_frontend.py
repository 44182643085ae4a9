"""The ComfyUI frontend's rules (1.27) for loading a UI workflow, checked against a live ``/object_info``.

Read from the frontend's sources (litegraph ``LGraphNode.configure``/``serialize``, ``useIntWidget``,
``uploadImage.ts``, ``workflowSchema.ts``): a node's serialised ``widgets_values`` are its widget inputs in
``input_order`` (required, then optional), each INT named seed/noise_seed (or any input with
``control_after_generate``) followed by its control value, and an ``upload`` button value after all other
widgets of a node with an upload combo (image_upload, video_upload or animated_image_upload). Values are
assigned by position, so a wrong count shifts every value.
"""

from __future__ import annotations

import json
import re
import urllib.parse

from workflow_tools import VIRTUAL_NODES

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")


def _kind(spec: list) -> str:
    return "COMBO" if isinstance(spec[0], list) else str(spec[0])


def _opts(spec: list) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _choices(spec: list) -> list:
    return spec[0] if isinstance(spec[0], list) else _opts(spec).get("options", [])


def frontend_widgets(node_info: dict) -> list[tuple[str, list | None]]:
    """(name, spec) per serialised widget value, in the frontend's order; spec None = an extra value.

    Widgets come in ``input_order`` (required, then optional); an INT named seed/noise_seed (or any
    input with ``control_after_generate``) is followed by its control combo. A required combo flagged
    image/video/animated_image_upload makes uploadImage.ts add a required ``upload`` input; it is not in
    ``input_order``, so getOrderedInputSpecs puts its button after every other widget, optional ones
    included, and the button serialises its value ("image") like any widget without ``serialize: false``.
    """
    out: list[tuple[str, list | None]] = []
    for section in ("required", "optional"):
        specs = node_info["input"].get(section, {})
        for name in node_info.get("input_order", {}).get(section, list(specs)):
            spec, kind = specs[name], _kind(specs[name])
            if kind not in WIDGET_TYPES or _opts(spec).get("forceInput"):
                continue
            out.append((name, spec))
            seed_like = kind == "INT" and name in ("seed", "noise_seed")
            if _opts(spec).get("control_after_generate", seed_like):
                out.append((f"{name}.control_after_generate", None))
    if has_upload_button(node_info):
        out.append(("upload", None))
    return out


def has_upload_button(node_info: dict) -> bool:
    """uploadImage.ts isMediaUploadComboInput, over the required inputs."""
    return any(
        _kind(spec) == "COMBO" and any(_opts(spec).get(k) is True for k in UPLOAD_OPTIONS)
        for spec in node_info["input"].get("required", {}).values()
    )


def _value_problem(name: str, spec: list | None, value) -> str | None:
    if spec is None:
        return None if not name.endswith("control_after_generate") or value in CONTROL_VALUES else f"{name}={value!r}"
    kind, opts = _kind(spec), _opts(spec)
    if kind == "COMBO":
        return None if value in _choices(spec) else f"{name}={value!r} is not offered ({_choices(spec)[:6]})"
    if kind in ("INT", "FLOAT"):
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool) and (kind == "FLOAT" or value == int(value))
        )
        if not ok or not opts.get("min", -float("inf")) <= value <= opts.get("max", float("inf")):
            return f"{name}={value!r} is not a {kind} in [{opts.get('min')}, {opts.get('max')}]"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return f"{name}={value!r} is not a boolean"
    if kind == "STRING" and not isinstance(value, str):
        return f"{name}={value!r} is not a string"
    return None


def node_problems(node: dict, node_info: dict) -> list[str]:
    where = f"node {node['id']} ({node['type']})"
    widgets, values = frontend_widgets(node_info), node.get("widgets_values", [])
    if len(values) != len(widgets):
        return [f"{where}: {len(values)} widget values, the editor has {len(widgets)}: {[w for w, _ in widgets]}"]
    return [
        f"{where}: {msg}" for (name, spec), value in zip(widgets, values) if (msg := _value_problem(name, spec, value))
    ]


def link_problems(workflow: dict, info: dict) -> list[str]:
    nodes = {n["id"]: n for n in workflow["nodes"]}
    problems = []
    for link_id, src, slot, dst, dst_slot, ltype in workflow["links"]:
        out_type = info[nodes[src]["type"]]["output"][slot]
        dst_node = nodes[dst]
        name = dst_node["inputs"][dst_slot]["name"]
        specs = {
            **info[dst_node["type"]]["input"].get("required", {}),
            **info[dst_node["type"]]["input"].get("optional", {}),
        }
        in_type = _kind(specs[name]) if name in specs else None
        if not ltype == out_type == in_type:
            problems.append(f"link {link_id}: {ltype!r} from an output {out_type!r} into {name!r} typed {in_type!r}")
    return problems


_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([\da-z-]+(?:\.[\da-z-]+)*))?"
    r"(?:\+([\da-z-]+(?:\.[\da-z-]+)*))?$"
)
_GIT_HASH = re.compile(r"^[0-9a-f]{4,40}$", re.I)
_REPO_LIKE_ID = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9._-]*[a-zA-Z0-9])?$")


def model_file_problems(models, where: str) -> list[str]:
    """zModelFile: {name: str, url: a URL, directory: str, hash?: str, hash_type?: str}."""
    if not isinstance(models, list):
        return [f"{where}: models {models!r} is not a list"]
    problems = []
    for entry in models:
        ok = isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("name", "url", "directory"))
        url = urllib.parse.urlparse(entry.get("url", "")) if ok else None
        if not (ok and url.scheme in ("http", "https") and url.netloc):
            problems.append(f"{where}: model {entry!r} needs name, url (a URL) and directory")
    return problems


def properties_problems(properties: dict, where: str) -> list[str]:
    """zProperties: cnr_id a registry id, ver a semver (a leading v allowed), git hash or 'unknown'; models."""
    problems = []
    cnr_id, ver = properties.get("cnr_id"), properties.get("ver")
    if cnr_id is not None and not (isinstance(cnr_id, str) and len(cnr_id) <= 100 and _REPO_LIKE_ID.match(cnr_id)):
        problems.append(f"{where}: cnr_id {cnr_id!r}")
    if ver is not None and not (
        isinstance(ver, str)
        and (ver == "unknown" or _SEMVER.match(ver.removeprefix("v")) or _GIT_HASH.match(ver.removeprefix("v")))
    ):
        problems.append(f"{where}: ver {ver!r} is no semantic version or git hash")
    if "models" in properties:
        problems += model_file_problems(properties["models"], where)
    return problems


def _is_vec2(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)


def schema_problems(workflow: dict) -> list[str]:
    """The frontend's zod schema for version 0.4 workflows (workflowSchema.ts): its required fields, and the
    optional ones we write (``models`` lists, node ``properties`` cnr_id / ver / models)."""
    num = (int, float)
    top = {"last_node_id": int, "last_link_id": num, "nodes": list, "links": list, "version": num}
    problems = [f"top-level {k!r} missing or not {t}" for k, t in top.items() if not isinstance(workflow.get(k), t)]
    ds = (workflow.get("extra") or {}).get("ds")
    if ds is not None and not (isinstance(ds.get("scale"), num) and _is_vec2(ds.get("offset"))):
        problems.append(f"extra.ds {ds!r}")
    if "models" in workflow:
        problems += model_file_problems(workflow["models"], "top-level")
    for link in workflow["links"]:
        if not (len(link) == 6 and all(isinstance(v, int) for v in link[:5]) and isinstance(link[5], str)):
            problems.append(f"link {link!r} is not [id, src, slot, dst, slot, type]")
    for node in workflow["nodes"]:
        fields = {
            "id": int,
            "type": str,
            "flags": dict,
            "order": num,
            "mode": num,
            "properties": dict,
            "widgets_values": list,
        }
        problems += [
            f"node {node.get('id')}: {k!r} not {t}" for k, t in fields.items() if not isinstance(node.get(k), t)
        ]
        problems += [f"node {node['id']}: {k!r} not [x, y]" for k in ("pos", "size") if not _is_vec2(node.get(k))]
        if isinstance(node.get("properties"), dict):
            problems += properties_problems(node["properties"], f"node {node.get('id')}")
        for slot in node.get("inputs", []):
            if not (
                isinstance(slot["name"], str)
                and isinstance(slot["type"], str)
                and (slot.get("link") is None or isinstance(slot["link"], int))
            ):
                problems.append(f"node {node['id']}: input {slot!r}")
        for slot in node.get("outputs", []):
            if not (
                isinstance(slot["name"], str)
                and isinstance(slot["type"], str)
                and isinstance(slot.get("links", []), list)
            ):
                problems.append(f"node {node['id']}: output {slot!r}")
    return problems


def frontend_api(workflow: dict, info: dict) -> dict:
    """The API prompt the editor would queue for a UI workflow, by the rules of :func:`frontend_widgets`."""
    links = {lk[0]: lk for lk in workflow["links"]}
    api = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) in (2, 4):
            continue
        named = zip(frontend_widgets(info[node["type"]]), node["widgets_values"])
        inputs = {name: value for (name, spec), value in named if spec is not None}
        for inp in node.get("inputs", []):
            if inp.get("link") is not None:
                inputs[inp["name"]] = [str(links[inp["link"]][1]), links[inp["link"]][2]]
        title = node.get("title") or info[node["type"]].get("display_name") or node["type"]  # the editor's default
        api[str(node["id"])] = {"inputs": inputs, "class_type": node["type"], "_meta": {"title": title}}
    return api


# --------------------------------------------------------------------------- dropping a video on the editor

_BOX = {"udta": b"udta", "meta": b"meta", "ilst": b"ilst", "keys": b"keys", "data": b"data", "moov": b"moov"}


def _find_box(data: bytes, start: int, end: int, box: str) -> tuple[int, int] | None:
    """isobmff.ts findIsobmffBoxByType: scan for a [size][type] header, skipping whole boxes of other types."""
    pos = start
    while pos < end - 8:
        size = int.from_bytes(data[pos : pos + 4], "big")
        if size < 8:
            pos += 1
            continue
        if data[pos + 4 : pos + 8] == _BOX[box]:
            return pos + 8, pos + size
        if pos + size > end:
            return None
        pos += size
    return None


def _keys(data: bytes, start: int, end: int) -> dict[int, str]:
    pos, keys = start + 4, {}
    count = int.from_bytes(data[pos : pos + 4], "big")
    pos += 4
    for index in range(1, count + 1):
        size = int.from_bytes(data[pos : pos + 4], "big")
        name_end = pos + size
        if size < 8 or name_end > end:
            break
        keys[index] = data[pos + 8 : name_end].decode()
        pos = name_end
    return keys


def _ilst_value(data: bytes, start: int, end: int) -> dict | None:
    box = _find_box(data, start, end, "data")
    if box is None:
        return None
    text = data[box[0] + 8 : box[1]]
    brace = text.find(b"{")
    try:
        return json.loads(text[brace:]) if brace >= 0 else None
    except json.JSONDecodeError:
        return None


def mp4_editor_metadata(data: bytes) -> dict:
    """What the editor (isobmff.ts) reads from a dropped mp4: {"prompt"?: dict, "workflow"?: dict}.

    A port of ``parseIsobmffMetadata``: udta (top level or in moov) -> meta -> keys + ilst, values are
    the JSON objects of the items whose key is ``prompt`` or ``workflow``; the ``mdta`` key namespace
    prefix ffmpeg writes is part of the key size, as the frontend sees it.
    """
    udta = _find_box(data, 0, len(data), "udta")
    if udta is None and (moov := _find_box(data, 0, len(data), "moov")):
        udta = _find_box(data, moov[0], moov[1], "udta")
    meta = udta and _find_box(data, udta[0], udta[1], "meta")
    keys_box = meta and _find_box(data, meta[0] + 4, meta[1], "keys")
    ilst = meta and _find_box(data, meta[0] + 4, meta[1], "ilst")
    if not (keys_box and ilst):
        return {}
    keys, out, pos = _keys(data, *keys_box), {}, ilst[0]
    while pos < ilst[1] - 8:
        size = int.from_bytes(data[pos : pos + 4], "big")
        if size <= 8 or pos + size > ilst[1]:
            break
        name = keys.get(int.from_bytes(data[pos + 4 : pos + 8], "big"), "")
        if name.lower() in ("prompt", "workflow") and (value := _ilst_value(data, pos + 8, pos + size)) is not None:
            out[name.lower()] = value
        pos += size
    return out


def webp_editor_metadata(path) -> dict:
    """What the editor (pnginfo.ts getWebpMetadata) reads: every EXIF string "key:value", JSON-decoded."""
    from PIL import Image

    out = {}
    with Image.open(path) as image:
        for value in image.getexif().values():
            if isinstance(value, str) and ":" in value:
                key, _, text = value.partition(":")
                out[key] = text
    return {k: json.loads(v) for k, v in out.items() if k in ("prompt", "workflow")}
