"""Records tests/data/object_info.json from a real ComfyUI with this pack loaded.

    COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/python python tests/record_object_info.py

Starts ComfyUI on CPU the way the real-server tests do (tests/comfyui_server.py, no model files), reads
``/object_info`` and keeps the entries of this pack's nodes and of every node type the shipped UI
workflows use. tests/test_queue_offline.py converts every shipped workflow with it and compares the
result with its API twin; rerun this after a node's inputs change or a workflow uses a new native node.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS.parent), str(TESTS)]

from comfyui_server import ComfyUIProcess, get_json, pack_linked, write_extra_model_paths  # noqa: E402

OUT = TESTS / "data" / "object_info.json"


def wanted_types(info: dict) -> set[str]:
    import nodes

    used = {n["type"] for p in (TESTS.parent / "workflows").glob("*.json") for n in json.loads(p.read_text())["nodes"]}
    return (set(nodes.NODE_CLASS_MAPPINGS) | used) & set(info)


def main() -> None:
    if not os.environ.get("COMFYUI_PATH"):
        sys.exit("set COMFYUI_PATH (and COMFYUI_PYTHON) to a ComfyUI checkout, as for tests/test_comfyui_real.py")
    root = Path(os.environ["COMFYUI_PATH"])
    with tempfile.TemporaryDirectory() as tmp, pack_linked(root):
        work = Path(tmp)
        write_extra_model_paths(work / "extra_model_paths.yaml", work / "models")
        server = ComfyUIProcess(root, work, work / "extra_model_paths.yaml")
        try:
            server.start()
            info = get_json(f"{server.base}/object_info", timeout=120)
        finally:
            server.stop()
    recorded = {name: info[name] for name in sorted(wanted_types(info))}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {OUT}: {len(recorded)} node types")


if __name__ == "__main__":
    main()
