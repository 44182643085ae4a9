"""UI-format workflows to the API format ``/prompt`` takes, by the editor's own rules (frontend 1.27).

Read from the frontend's sources (litegraph ``LGraphNode.configure``/``serialize``, ``useIntWidget``,
``uploadImage.ts``, ``graphToPrompt``): a node's serialised ``widgets_values`` are its widget inputs in
``input_order`` (required, then optional); an INT named seed/noise_seed (or any input whose options set
``control_after_generate``) is followed by its control value; a node with an upload combo (required, flagged
image/video/animated_image_upload) gets an ``upload`` button whose value comes after every other widget.
Values are assigned by position, so a wrong count shifts every value: we refuse instead of guessing.

Every node's layout comes from its ``/object_info`` entry (``node_info``), so this works for any node pack.
Frontend-only nodes (notes, reroutes, primitives) are resolved the way ``graphToPrompt`` does; muted nodes
(mode 2) are left out and bypassed ones (mode 4) pass their matching input through.
"""

from __future__ import annotations

from typing import Any

from .errors import WorkflowError

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
SEED_NAMES = ("seed", "noise_seed")
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
UPLOAD_VALUE = "image"  # what the upload button serialises, for images and videos alike
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
NOTE_NODES = ("Note", "MarkdownNote")
VIRTUAL_NODES = (*NOTE_NODES, "Reroute", "PrimitiveNode")  # the editor's own nodes, never sent to the server
MUTED, BYPASSED = 2, 4

WidgetSlot = tuple[str, Any]  # (name, spec); spec None for an extra value (control_after_generate, upload)


# --------------------------------------------------------------------------- input specs


def input_kind(spec: Any) -> str:
    """The socket/widget type of an input spec: ``COMBO`` for a list of choices (old or v2 style)."""
    return "COMBO" if isinstance(spec[0], (list, tuple)) else str(spec[0])


def input_options(spec: Any) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def combo_choices(spec: Any) -> list:
    return list(spec[0]) if isinstance(spec[0], (list, tuple)) else list(input_options(spec).get("options", []))


def is_widget_input(spec: Any) -> bool:
    """Whether the editor shows this input as a widget (a value) rather than a socket (a link)."""
    return input_kind(spec) in WIDGET_TYPES and not input_options(spec).get("forceInput")


def has_control_value(name: str, spec: Any) -> bool:
    """Whether the widget is followed by a control_after_generate value (seeds, unless told otherwise)."""
    seed_like = input_kind(spec) == "INT" and name in SEED_NAMES
    return bool(input_options(spec).get("control_after_generate", seed_like))


def has_upload_button(node_info: dict) -> bool:
    """uploadImage.ts isMediaUploadComboInput, over the required inputs."""
    return any(
        input_kind(spec) == "COMBO" and any(input_options(spec).get(k) is True for k in UPLOAD_OPTIONS)
        for spec in node_info["input"].get("required", {}).values()
    )


def declared_inputs(node_info: dict) -> list[tuple[str, Any, bool]]:
    """(name, spec, required) of every input, in ``input_order`` (required first)."""
    out = []
    for section in ("required", "optional"):
        specs = node_info["input"].get(section, {})
        for name in node_info.get("input_order", {}).get(section, list(specs)):
            out.append((name, specs[name], section == "required"))
    return out


def widget_slots(node_info: dict) -> list[WidgetSlot]:
    """(name, spec) per serialised widget value, in the editor's order; spec None marks an extra value.

    The ``upload`` input uploadImage.ts adds is not in ``input_order``, so its button comes after every
    other widget, optional ones included; it serialises like any widget.
    """
    out: list[WidgetSlot] = []
    for name, spec, _required in declared_inputs(node_info):
        if not is_widget_input(spec):
            continue
        out.append((name, spec))
        if has_control_value(name, spec):
            out.append((f"{name}.control_after_generate", None))
    if has_upload_button(node_info):
        out.append(("upload", None))
    return out


def named_widget_values(node_info: dict, values: list | dict, where: str = "node") -> dict[str, Any]:
    """{input name: value} of a node's ``widgets_values`` (extra values dropped).

    Raises WorkflowError when the count differs from the node's current layout (the editor would shift
    every value by position; a changed node definition is the usual cause).
    """
    slots = widget_slots(node_info)
    if isinstance(values, dict):  # some packs serialise widgets by name
        return {name: values[name] for name, spec in slots if spec is not None and name in values}
    if len(values) != len(slots):
        raise WorkflowError(
            f"{where}: {len(values)} widget values, but the server's node has {len(slots)} "
            f"({[name for name, _ in slots]}); got {values}. Open and re-save the workflow in the editor "
            "(the node's definition changed), or queue its API export instead."
        )
    return {name: value for (name, spec), value in zip(slots, values) if spec is not None}


# --------------------------------------------------------------------------- UI -> API


def is_ui_workflow(data: dict) -> bool:
    """UI workflows have ``nodes`` and ``links`` lists; API ones map node ids to {class_type, inputs}."""
    return isinstance(data.get("nodes"), list) and "links" in data


def missing_node_types(class_types: set[str] | list[str], object_info: dict) -> list[str]:
    return sorted(set(class_types) - set(object_info) - set(VIRTUAL_NODES))


def _links(workflow: dict) -> dict[int, tuple[int, int, int, int]]:
    """{link id: (source node, source slot, target node, target slot)}; old list and new object forms."""
    out = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):
            out[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"])
        else:
            out[link[0]] = (link[1], link[2], link[3], link[4])
    return out


class _Graph:
    """Link resolution through reroutes, bypassed nodes and primitives, as graphToPrompt does."""

    def __init__(self, workflow: dict):
        self.nodes = {n["id"]: n for n in workflow["nodes"]}
        self.links = _links(workflow)

    def source(self, link_id: int | None, depth: int = 0) -> tuple[dict, int] | None:
        """(node, output slot) that really feeds a link; None when nothing does (muted, dangling)."""
        if link_id is None or link_id not in self.links or depth > len(self.nodes):
            return None
        src_id, slot, _dst, _dst_slot = self.links[link_id]
        node = self.nodes.get(src_id)
        if node is None or node.get("mode", 0) == MUTED:
            return None
        if node["type"] == "Reroute":
            return self.source(_first_link(node), depth + 1)
        if node.get("mode", 0) == BYPASSED:
            return self.source(_bypass_input(node, slot), depth + 1)
        return node, slot


def _first_link(node: dict) -> int | None:
    return next((i.get("link") for i in node.get("inputs", []) if i.get("link") is not None), None)


def _bypass_input(node: dict, slot: int) -> int | None:
    """The input a bypassed node passes through on output ``slot``: same index and type first, else same type."""
    outputs, inputs = node.get("outputs", []), node.get("inputs", [])
    out_type = outputs[slot].get("type") if slot < len(outputs) else None
    if slot < len(inputs) and inputs[slot].get("type") == out_type and inputs[slot].get("link") is not None:
        return inputs[slot]["link"]
    return next((i["link"] for i in inputs if i.get("type") == out_type and i.get("link") is not None), None)


def _node_inputs(node: dict, node_info: dict, graph: _Graph) -> dict[str, Any]:
    where = f"node {node['id']} ({node['type']})"
    inputs = named_widget_values(node_info, node.get("widgets_values", []), where)
    for inp in node.get("inputs", []):
        found = graph.source(inp.get("link"))
        if found is None:
            continue
        src, slot = found
        if src["type"] == "PrimitiveNode":  # its value is the widget's own
            inputs[inp["name"]] = src.get("widgets_values", [inputs.get(inp["name"])])[0]
        else:
            inputs[inp["name"]] = [str(src["id"]), slot]
    return inputs


def ui_to_api(workflow: dict, object_info: dict) -> dict[str, dict]:
    """The API prompt ({id: {inputs, class_type, _meta: {title}}}) the editor would queue for ``workflow``.

    ``object_info`` is the server's ``/object_info`` (or the part covering the workflow's node types).
    """
    if (workflow.get("definitions") or {}).get("subgraphs"):
        raise WorkflowError(
            "this workflow contains subgraphs, which the converter does not expand: convert them back to "
            "nodes in the editor, or queue the editor's API export (Workflow > Export (API))."
        )
    missing = missing_node_types({n["type"] for n in workflow["nodes"]}, object_info)
    if missing:
        raise WorkflowError(f"the server has no node types {missing}: install the node packs that provide them.")
    graph, api = _Graph(workflow), {}
    for node in sorted(workflow["nodes"], key=lambda n: n["id"]):
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        info = object_info[node["type"]]
        title = node.get("title") or info.get("display_name") or node["type"]
        api[str(node["id"])] = {
            "inputs": _node_inputs(node, info, graph),
            "class_type": node["type"],
            "_meta": {"title": title},
        }
    return api


def is_link(value: Any) -> bool:
    """An API input that is a link: [source node id, output slot]."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)
