"""wan_queue without a server: UI->API conversion of every shipped workflow against a recorded /object_info,
the editor's link rules (reroutes, primitives, bypass, mute), KEY addressing, job expansion and hashing,
local files, and the manifest's atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from workflow_tools import API_DIR, WORKFLOWS, load_json

from wan_queue.convert import ui_to_api, widget_slots
from wan_queue.errors import ParameterError, WorkflowError
from wan_queue.jobs import FileResolver, job_id, make_jobs
from wan_queue.manifest import Manifest, atomic_write
from wan_queue.params import apply_params, expand_jobs, parse_seeds, parse_set, parse_sweep, read_batch, resolve_key

RECORDED = Path(__file__).parent / "data" / "object_info.json"
RECORD_CMD = "COMFYUI_PATH=... COMFYUI_PYTHON=... python tests/record_object_info.py"


@pytest.fixture(scope="module")
def recorded() -> dict:
    return json.loads(RECORDED.read_text())


@pytest.mark.parametrize("name", sorted(p.stem for p in WORKFLOWS.glob("*.json")))
def test_shipped_workflow_converts_to_its_api_twin(recorded, name):
    workflow = load_json(WORKFLOWS / f"{name}.json")
    try:
        api = ui_to_api(workflow, recorded)
    except WorkflowError as exc:
        pytest.fail(f"{exc}\nIf nodes changed or a workflow uses a new node type, re-record: {RECORD_CMD}")
    assert api == load_json(API_DIR / f"{name}.json"), f"if a node's inputs changed, re-record: {RECORD_CMD}"


# --------------------------------------------------------------------------- editor rules

INFO = {
    "Src": {"input": {"required": {"n": ["INT", {}]}}, "output": ["IMAGE"], "display_name": "Source"},
    "Dst": {
        "input": {"required": {"image": ["IMAGE", {}], "seed": ["INT", {}], "text": ["STRING", {}]}},
        "input_order": {"required": ["image", "seed", "text"]},
        "output": ["IMAGE"],
    },
}


def _node(nid, ntype, values, inputs=(), outputs=(), mode=0, title=None):
    node = {"id": nid, "type": ntype, "mode": mode, "widgets_values": values}
    node["inputs"] = [{"name": n, "type": t, "link": lk} for n, t, lk in inputs]
    node["outputs"] = [{"name": t, "type": t, "links": lks} for t, lks in outputs]
    return node | ({"title": title} if title else {})


def _chain(middle: dict, middle_mode: int = 0) -> dict:
    """Src(1) -> middle(2) -> Dst(3); Dst's seed widget fed by a PrimitiveNode(4)."""
    middle["mode"] = middle_mode
    return {
        "nodes": [
            _node(1, "Src", [5], outputs=[("IMAGE", [1])]),
            middle,
            _node(3, "Dst", [7, "fixed", "hi"], inputs=[("image", "IMAGE", 2), ("seed", "INT", 3)]),
            _node(4, "PrimitiveNode", [99, "fixed"], outputs=[("INT", [3])]),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"], [3, 4, 0, 3, 1, "INT"]],
    }


def test_reroute_bypass_mute_primitive_and_titles():
    reroute = _node(2, "Reroute", [], inputs=[("", "*", 1)], outputs=[("IMAGE", [2])])
    api = ui_to_api(_chain(reroute), INFO)
    assert api["3"]["inputs"] == {"image": ["1", 0], "seed": 99, "text": "hi"}
    assert api["1"]["_meta"]["title"] == "Source" and api["3"]["_meta"]["title"] == "Dst"  # display name, else type
    dst = _node(2, "Dst", [1, "fixed", "x"], inputs=[("image", "IMAGE", 1)], outputs=[("IMAGE", [2])], title="Mid")
    assert ui_to_api(_chain(dict(dst)), INFO)["2"]["_meta"]["title"] == "Mid"
    bypassed = ui_to_api(_chain(dict(dst), middle_mode=4), INFO)
    assert "2" not in bypassed and bypassed["3"]["inputs"]["image"] == ["1", 0]
    muted = ui_to_api(_chain(dict(dst), middle_mode=2), INFO)
    assert "2" not in muted and "image" not in muted["3"]["inputs"]


def test_conversion_refuses_wrong_counts_unknown_types_and_subgraphs():
    workflow = {"nodes": [_node(1, "Dst", [7, "hi"])], "links": []}
    with pytest.raises(WorkflowError, match=r"node 1 \(Dst\): 2 widget values, but the server's node has 3"):
        ui_to_api(workflow, INFO)
    workflow["nodes"].append(_node(2, "FancyPackNode", []))
    with pytest.raises(WorkflowError, match="FancyPackNode"):
        ui_to_api(workflow, INFO)
    with pytest.raises(WorkflowError, match="subgraphs"):
        ui_to_api({"nodes": [], "links": [], "definitions": {"subgraphs": [{"id": "x"}]}}, INFO)


def test_control_value_follows_the_option_not_only_the_name():
    info = {
        "input": {
            "required": {
                "seed": ["INT", {"control_after_generate": False}],
                "k": [["a"], {"control_after_generate": True}],
            }
        }
    }
    assert [name for name, _spec in widget_slots(info)] == ["seed", "k", "k.control_after_generate"]


# --------------------------------------------------------------------------- parameters and addressing

API = {
    "1": {"class_type": "Loader", "inputs": {"model_name": "a.safetensors"}, "_meta": {"title": "Loader"}},
    "2": {"class_type": "Sampler", "inputs": {"model": ["1", 0], "seed": 1, "steps": 20}, "_meta": {"title": "High"}},
    "3": {
        "class_type": "Sampler",
        "inputs": {"model": ["1", 0], "noise_seed": 1, "steps": 20},
        "_meta": {"title": "Low"},
    },
}


def test_values_parse_as_json_where_they_can():
    assert parse_set("steps=4") == ("steps", 4)
    assert parse_set("positive=a fox, running") == ("positive", "a fox, running")
    assert parse_set('x="5"') == ("x", "5") and parse_set("f=true") == ("f", True) and parse_set("e=") == ("e", "")
    assert parse_sweep("cfg=1,2.5,x") == ("cfg", [1, 2.5, "x"])
    assert parse_sweep('positive=["a, b","c"]') == ("positive", ["a, b", "c"])
    assert parse_seeds("1-3,7") == [1, 2, 3, 7]
    for bad in (lambda: parse_set("steps"), lambda: parse_seeds("a-b")):
        with pytest.raises(ParameterError):
            bad()


def test_key_addresses_inputs_by_name_id_title_and_class():
    assert resolve_key(API, "steps") == [("2", "steps"), ("3", "steps")]
    assert resolve_key(API, "seed") == [("2", "seed"), ("3", "noise_seed")]  # seed also means noise_seed
    assert resolve_key(API, "3.steps") == [("3", "steps")]
    assert resolve_key(API, "High.steps") == [("2", "steps")]
    assert resolve_key(API, "Sampler.steps") == [("2", "steps"), ("3", "steps")]
    info = {"Sampler": {"input": {"optional": {"denoise": ["FLOAT", {}]}}}}
    assert resolve_key(API, "Low.denoise", info) == [("3", "denoise")]  # optional, unset in the graph
    with pytest.raises(ParameterError, match="is a link"):
        resolve_key(API, "model")
    with pytest.raises(ParameterError, match="addresses nothing"):
        resolve_key(API, "stpes")
    with pytest.raises(ParameterError, match="has no input 'denoise'"):
        resolve_key(API, "Low.denoise")
    out = apply_params(API, {"steps": 4, "Low.steps": 8, "seed": 5})
    assert [out[n]["inputs"]["steps"] for n in ("2", "3")] == [4, 8] and out["3"]["inputs"]["noise_seed"] == 5
    assert API["2"]["inputs"]["steps"] == 20  # the original is untouched


def test_batch_rows_sweeps_and_seeds_expand_in_order(tmp_path):
    csv_path = tmp_path / "jobs.csv"
    csv_path.write_text('positive,steps\n"a fox, running",4\na bird,\n')
    rows = read_batch(csv_path)
    assert rows == [{"positive": "a fox, running", "steps": 4}, {"positive": "a bird"}]
    jsonl = tmp_path / "jobs.jsonl"
    jsonl.write_text('{"positive": "4"}\n\n{"steps": 2}\n')
    assert read_batch(jsonl) == [{"positive": "4"}, {"steps": 2}]
    jobs = expand_jobs(rows, [("steps", 9), ("cfg", 1.0)], [("shift", [1, 2])], [7, 8])
    assert len(jobs) == 2 * 2 * 2
    assert jobs[0] == {"steps": 4, "cfg": 1.0, "positive": "a fox, running", "shift": 1, "seed": 7}
    assert jobs[-1] == {"steps": 9, "cfg": 1.0, "positive": "a bird", "shift": 2, "seed": 8}


def test_job_id_hashes_the_resolved_graph_only():
    base = job_id(API)
    retitled = json.loads(json.dumps(API))
    retitled["2"]["_meta"]["title"] = "Other"
    assert job_id(retitled) == base and len(base) == 16
    assert job_id(apply_params(API, {"steps": 21})) != base
    jobs = make_jobs(API, [{"steps": 4}, {"High.steps": 4, "Low.steps": 4}, {"steps": 5}])
    assert len(jobs) == 2 and jobs[0].params == {"steps": 4}  # the same graph twice is one job


def test_local_files_get_content_names_and_change_the_id(tmp_path, monkeypatch):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "start.png").write_bytes(b"one")
    mine = tmp_path / "mine.png"
    mine.write_bytes(b"two")
    monkeypatch.chdir(tmp_path)
    api = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "start.png"}},
        "2": {"class_type": "X", "inputs": {"t": "a"}},
    }
    resolver = FileResolver(inputs)
    (shipped,) = make_jobs(api, [{}], resolver=resolver)
    (local,) = make_jobs(api, [{"image": "@mine.png"}], resolver=resolver)
    assert shipped.prompt["1"]["inputs"]["image"].startswith("start-") and shipped.files[0].path == inputs / "start.png"
    assert local.prompt["1"]["inputs"]["image"].startswith("mine-") and local.files[0].sha256 != shipped.files[0].sha256
    mine.write_bytes(b"changed")
    (changed,) = make_jobs(api, [{"image": "@mine.png"}], resolver=FileResolver(inputs))
    assert changed.id != local.id
    with pytest.raises(ParameterError, match="no such local file"):
        make_jobs(api, [{"image": "@missing.png"}], resolver=resolver)


# --------------------------------------------------------------------------- manifest


def test_manifest_ignores_and_cuts_a_torn_last_line(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.append({"job": "a", "status": "queued"})
    manifest.append({"job": "a", "status": "completed"})
    with open(manifest.path, "ab") as handle:
        handle.write(b'{"job": "b", "sta')  # a write cut short
    assert [r["status"] for r in manifest.records()] == ["queued", "completed"]
    manifest.append({"job": "b", "status": "failed"})
    assert manifest.latest() == {"a": manifest.records()[1], "b": manifest.records()[2]}
    assert all(json.loads(line) for line in manifest.path.read_text().splitlines())


def test_atomic_write_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "video.mp4"
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write(b"half")
        raise RuntimeError("connection lost")
    assert list(tmp_path.iterdir()) == []
    with atomic_write(target) as handle:
        handle.write(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def test_the_tool_imports_neither_comfy_nor_torch():
    """It runs on machines without ComfyUI or torch: importing the whole CLI pulls in neither."""
    import subprocess
    import sys

    from conftest import ROOT

    code = "import sys, wan_queue.cli; bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'comfy', 'nodes', 'folder_paths', 'wan_core')]; print(bad)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
