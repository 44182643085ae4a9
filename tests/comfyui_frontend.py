"""Checks of a UI workflow against a live ``/object_info`` by the ComfyUI frontend's rules (1.27).

The rules that lay out a node's ``widgets_values`` (and convert a UI workflow to the API format) live in
:mod:`wan_queue.convert`; here: whether each value is one the editor accepts (counts, combo choices,
ranges, control values), link types, the workflow schema, and what the editor reads from a dropped video.
"""

from __future__ import annotations

import json
import re
import urllib.parse

from wan_queue.convert import CONTROL_VALUES, combo_choices, input_kind, input_options, widget_slots


def _value_problem(name: str, spec: list | None, value) -> str | None:
    if spec is None:
        return None if not name.endswith("control_after_generate") or value in CONTROL_VALUES else f"{name}={value!r}"
    kind, opts = input_kind(spec), input_options(spec)
    if kind == "COMBO":
        return None if value in combo_choices(spec) else f"{name}={value!r} is not offered ({combo_choices(spec)[:6]})"
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
    widgets, values = widget_slots(node_info), node.get("widgets_values", [])
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
        in_type = input_kind(specs[name]) if name in specs else None
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
