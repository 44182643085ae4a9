"""The frontend-rule checker used by the real-ComfyUI test, on hand-written /object_info entries (no ComfyUI)."""

from __future__ import annotations

from comfyui_frontend import frontend_api, frontend_widgets, link_problems, node_problems, schema_problems

SAMPLER = {
    "input": {"required": {"model": ["MODEL", {}], "seed": ["INT", {"min": 0, "max": 10}],
                           "mode": [["a", "b"], {}], "strength": ["FLOAT", {"min": 0.0, "max": 1.0}]},
              "optional": {"extra": ["INT", {"forceInput": True}], "flag": ["BOOLEAN", {}]}},
    "input_order": {"required": ["model", "seed", "mode", "strength"], "optional": ["extra", "flag"]},
    "output": ["LATENT"],
}
LOAD_IMAGE = {"input": {"required": {"image": [["x.png"], {"image_upload": True}], "n": ["INT", {}]}},
              "input_order": {"required": ["image", "n"]}, "output": ["IMAGE", "MASK"]}
INFO = {"Sampler": SAMPLER, "LoadImage": LOAD_IMAGE}


def _node(node_id: int, node_type: str, values: list, inputs: list | None = None) -> dict:
    return {"id": node_id, "type": node_type, "pos": [0, 0], "size": [100, 100], "flags": {}, "order": 0,
            "mode": 0, "properties": {}, "widgets_values": values, "inputs": inputs or [], "outputs": []}


def test_widget_order_has_seed_control_and_upload_after_required_widgets():
    assert [n for n, _ in frontend_widgets(SAMPLER)] == ["seed", "seed.control_after_generate", "mode", "strength",
                                                         "flag"]
    assert [n for n, _ in frontend_widgets(LOAD_IMAGE)] == ["image", "n", "upload"]


def test_problems_found_for_count_range_choice_and_control_value():
    assert node_problems(_node(1, "Sampler", [3, "fixed", "a", 0.5, True]), SAMPLER) == []
    assert "widget values" in node_problems(_node(1, "Sampler", [3, "a", 0.5, True]), SAMPLER)[0]
    assert "not offered" in node_problems(_node(1, "Sampler", [3, "fixed", "c", 0.5, True]), SAMPLER)[0]
    assert "INT in" in node_problems(_node(1, "Sampler", [11, "fixed", "a", 0.5, True]), SAMPLER)[0]
    assert "control_after_generate" in node_problems(_node(1, "Sampler", [3, "x", "a", 0.5, True]), SAMPLER)[0]
    assert "boolean" in node_problems(_node(1, "Sampler", [3, "fixed", "a", 0.5, 1]), SAMPLER)[0]


def test_links_schema_and_api_conversion():
    model = {"name": "model", "type": "MODEL", "link": 1}
    workflow = {"last_node_id": 2, "last_link_id": 1, "version": 0.4, "links": [[1, 1, 0, 2, 0, "IMAGE"]],
                "nodes": [_node(1, "LoadImage", ["x.png", 2, "image"]),
                          _node(2, "Sampler", [3, "fixed", "b", 0.5, False], [model])]}
    assert link_problems(workflow, INFO) == ["link 1: 'IMAGE' from an output 'IMAGE' into 'model' typed 'MODEL'"]
    assert schema_problems(workflow) == []
    assert frontend_api(workflow, INFO)["2"]["inputs"] == {"seed": 3, "mode": "b", "strength": 0.5, "flag": False,
                                                           "model": ["1", 0]}
    del workflow["version"]
    workflow["nodes"][0]["pos"] = [0]
    assert len(schema_problems(workflow)) == 2
