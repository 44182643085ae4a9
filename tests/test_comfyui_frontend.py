"""The frontend rules used by the real-ComfyUI test and wan_queue (no ComfyUI needed): widget layout on
hand-written /object_info entries, and the metadata the editor reads from a dropped video."""

from __future__ import annotations

import pytest
from comfyui_frontend import (
    link_problems,
    mp4_editor_metadata,
    node_problems,
    schema_problems,
    webp_editor_metadata,
)

from wan_queue.convert import ui_to_api, widget_slots

SAMPLER = {
    "input": {
        "required": {
            "model": ["MODEL", {}],
            "seed": ["INT", {"min": 0, "max": 10}],
            "mode": [["a", "b"], {}],
            "strength": ["FLOAT", {"min": 0.0, "max": 1.0}],
        },
        "optional": {"extra": ["INT", {"forceInput": True}], "flag": ["BOOLEAN", {}]},
    },
    "input_order": {"required": ["model", "seed", "mode", "strength"], "optional": ["extra", "flag"]},
    "output": ["LATENT"],
}
LOAD_IMAGE = {
    "input": {"required": {"image": [["x.png"], {"image_upload": True}], "n": ["INT", {}]}},
    "input_order": {"required": ["image", "n"]},
    "output": ["IMAGE", "MASK"],
}
LOAD_VIDEO = {
    "input": {
        "required": {"video": [["x.mp4"], {"video_upload": True}]},
        "optional": {"frames": ["INT", {}], "image": ["IMAGE", {}]},
    },
    "input_order": {"required": ["video"], "optional": ["frames", "image"]},
    "output": ["IMAGE"],
}
V2_COMBO = {
    "input": {"required": {"clip": ["COMBO", {"options": ["a.webp"], "animated_image_upload": True}]}},
    "input_order": {"required": ["clip"]},
    "output": ["IMAGE"],
}
INFO = {"Sampler": SAMPLER, "LoadImage": LOAD_IMAGE}


def _node(node_id: int, node_type: str, values: list, inputs: list | None = None) -> dict:
    return {
        "id": node_id,
        "type": node_type,
        "pos": [0, 0],
        "size": [100, 100],
        "flags": {},
        "order": 0,
        "mode": 0,
        "properties": {},
        "widgets_values": values,
        "inputs": inputs or [],
        "outputs": [],
    }


def test_widget_order_has_seed_control_and_upload_after_required_widgets():
    assert [n for n, _ in widget_slots(SAMPLER)] == [
        "seed",
        "seed.control_after_generate",
        "mode",
        "strength",
        "flag",
    ]
    assert [n for n, _ in widget_slots(LOAD_IMAGE)] == ["image", "n", "upload"]


def test_upload_button_of_any_media_combo_comes_after_every_widget():
    """uploadImage.ts adds ``upload`` to the required inputs but not to input_order: its button goes last,
    after optional widgets too; a combo without an upload flag (or a socket) adds none."""
    assert [n for n, _ in widget_slots(LOAD_VIDEO)] == ["video", "frames", "upload"]
    assert [n for n, _ in widget_slots(V2_COMBO)] == ["clip", "upload"]
    plain = {"input": {"required": {"video": [["x.mp4"], {"video_upload": False}]}}, "output": []}
    assert [n for n, _ in widget_slots(plain)] == ["video"]
    node = _node(1, "LoadVideo", ["x.mp4", 3, "image"])
    assert node_problems(node, LOAD_VIDEO) == []
    assert "widget values" in node_problems(_node(1, "LoadVideo", ["x.mp4", 3]), LOAD_VIDEO)[0]
    workflow = {"links": [], "nodes": [node]}
    assert ui_to_api(workflow, {"LoadVideo": LOAD_VIDEO})["1"]["inputs"] == {"video": "x.mp4", "frames": 3}


def test_problems_found_for_count_range_choice_and_control_value():
    assert node_problems(_node(1, "Sampler", [3, "fixed", "a", 0.5, True]), SAMPLER) == []
    assert "widget values" in node_problems(_node(1, "Sampler", [3, "a", 0.5, True]), SAMPLER)[0]
    assert "not offered" in node_problems(_node(1, "Sampler", [3, "fixed", "c", 0.5, True]), SAMPLER)[0]
    assert "INT in" in node_problems(_node(1, "Sampler", [11, "fixed", "a", 0.5, True]), SAMPLER)[0]
    assert "control_after_generate" in node_problems(_node(1, "Sampler", [3, "x", "a", 0.5, True]), SAMPLER)[0]
    assert "boolean" in node_problems(_node(1, "Sampler", [3, "fixed", "a", 0.5, 1]), SAMPLER)[0]


def test_links_schema_and_api_conversion():
    model = {"name": "model", "type": "MODEL", "link": 1}
    workflow = {
        "last_node_id": 2,
        "last_link_id": 1,
        "version": 0.4,
        "links": [[1, 1, 0, 2, 0, "IMAGE"]],
        "nodes": [
            _node(1, "LoadImage", ["x.png", 2, "image"]),
            _node(2, "Sampler", [3, "fixed", "b", 0.5, False], [model]),
        ],
    }
    assert link_problems(workflow, INFO) == ["link 1: 'IMAGE' from an output 'IMAGE' into 'model' typed 'MODEL'"]
    assert schema_problems(workflow) == []
    assert ui_to_api(workflow, INFO)["2"]["inputs"] == {
        "seed": 3,
        "mode": "b",
        "strength": 0.5,
        "flag": False,
        "model": ["1", 0],
    }
    del workflow["version"]
    workflow["nodes"][0]["pos"] = [0]
    assert len(schema_problems(workflow)) == 2


def test_schema_checks_pack_ids_versions_and_model_files():
    model = {"name": "a.safetensors", "url": "https://example.org/a.safetensors", "directory": "vae"}
    node = _node(1, "X", [])
    workflow = {"last_node_id": 1, "last_link_id": 0, "version": 0.4, "links": [], "nodes": [node], "models": [model]}
    node["properties"] = {"cnr_id": "comfyui-wan-core", "ver": "v0.1.0", "models": [model]}
    assert schema_problems(workflow) == []
    node["properties"] = {"cnr_id": "-bad", "ver": "0.1", "models": [{"name": "a.safetensors", "directory": "vae"}]}
    workflow["models"] = [dict(model, url="not a url")]
    problems = schema_problems(workflow)
    assert len(problems) == 4 and "top-level" in problems[0], problems
    assert [p.split(": ")[1].split(" ")[0] for p in problems[1:]] == ["cnr_id", "ver", "model"], problems


@pytest.mark.parametrize("suffix", [".mp4", ".webp"])
def test_saved_video_carries_the_workflow_the_editor_reads(tmp_path, suffix):
    """write_video(keyed_metadata=True), as our Save Video node calls it: the editor's readers (ported) find the
    workflow and prompt; our own JSON (read_metadata) survives too, non-ASCII included (EXIF is ASCII)."""
    import torch

    from wan_core.video_io import read_metadata, write_video

    meta = {"prompt": {"1": {"inputs": {"negative": "色调艳丽"}}}, "workflow": {"nodes": [], "title": "é"}}
    frames = torch.rand(3, 16, 16, 3)
    path = write_video(frames, tmp_path / f"keyed{suffix}", metadata=meta, keyed_metadata=True)
    plain = write_video(frames, tmp_path / f"plain{suffix}", metadata=meta)
    read = mp4_editor_metadata if suffix == ".mp4" else webp_editor_metadata
    assert read(path.read_bytes() if suffix == ".mp4" else path) == meta
    assert read(plain.read_bytes() if suffix == ".mp4" else plain) == {}
    assert read_metadata(path) == meta and read_metadata(plain) == meta
