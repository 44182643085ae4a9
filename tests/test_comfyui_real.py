"""End to end inside a real ComfyUI (0.3.64 or later) on CPU, with tiny checkpoints.

Runs only when COMFYUI_PATH points at a ComfyUI checkout whose requirements are installed
in this Python. It links this pack into ``custom_nodes`` (removed afterwards), writes tiny
models and an ``extra_model_paths.yaml``, starts ``main.py --cpu`` on a free port, checks
that ``/object_info`` lists every node the shipped workflows use, queues every API workflow
(small sizes) through ``/prompt`` and checks each writes a video with the requested frame
count (polling ``/history``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import ROOT
from workflow_tools import API_DIR, VIRTUAL_NODES, WORKFLOWS, load_json, override_api

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

SMALL = {"width": 32, "height": 32, "length": 5, "steps": 2}
START_TIMEOUT_S = 300
RUN_TIMEOUT_S = 600
LINK_NAME = "comfyui-wan-core-under-test"


def _comfyui_path() -> Path:
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        pytest.skip("COMFYUI_PATH is not set: set it to a ComfyUI checkout (0.3.64+) to run the real-ComfyUI test")
    root = Path(path)
    if not (root / "main.py").is_file():
        pytest.skip(f"COMFYUI_PATH={path} has no main.py: point it at a ComfyUI checkout")
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 30) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # ComfyUI answers 400 with the validation errors
        raise AssertionError(f"/prompt rejected the workflow: {exc.read().decode(errors='replace')}") from exc


def _write_extra_model_paths(path: Path, models: Path) -> None:
    folders = ("diffusion_models", "vae", "text_encoders", "clip_vision", "loras")
    lines = ["wan_core_tiny:", f"    base_path: {models}"] + [f"    {f}: {f}" for f in folders]
    path.write_text("\n".join(lines) + "\n")


def _wait_until_up(base: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.time() + START_TIMEOUT_S
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"ComfyUI exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            _get(f"{base}/system_stats", timeout=5)
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"ComfyUI did not start within {START_TIMEOUT_S}s:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory):
    root = _comfyui_path()
    from wan_core.tiny_build import write_tiny_models

    work = tmp_path_factory.mktemp("comfyui_real")
    models, inputs, outputs = work / "models", work / "input", work / "output"
    write_tiny_models(models)
    shutil.copytree(WORKFLOWS / "inputs", inputs)
    outputs.mkdir()
    _write_extra_model_paths(work / "extra_model_paths.yaml", models)
    link = root / "custom_nodes" / LINK_NAME
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    port = _free_port()
    log_path = work / "comfyui.log"
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--extra-model-paths-config", str(work / "extra_model_paths.yaml"),
           "--input-directory", str(inputs), "--output-directory", str(outputs)]
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process, log_path)
        yield {"base": base, "outputs": outputs, "log": log_path}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        if link.is_symlink():
            link.unlink()


def test_object_info_lists_every_node_the_workflows_use(comfyui):
    import nodes

    info = _get(f"{comfyui['base']}/object_info", timeout=120)
    missing = sorted(set(nodes.NODE_CLASS_MAPPINGS) - set(info))
    assert not missing, f"not registered in ComfyUI: {missing}\n{comfyui['log'].read_text()[-3000:]}"
    used = {n["type"] for p in WORKFLOWS.glob("*.json") for n in load_json(p)["nodes"]} - set(VIRTUAL_NODES)
    assert used <= set(info), f"the editor would show these as missing: {sorted(used - set(info))}"
    for node_id in nodes.NODE_CLASS_MAPPINGS:
        assert info[node_id]["category"].startswith("Wan video")


def _wait_for_history(base: str, prompt_id: str) -> dict:
    deadline = time.time() + RUN_TIMEOUT_S
    while time.time() < deadline:
        history = _get(f"{base}/history/{prompt_id}")
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            entry = history[prompt_id]
            if entry["status"].get("status_str") in ("success", "error"):
                return entry
        time.sleep(1)
    raise AssertionError(f"prompt {prompt_id} did not finish within {RUN_TIMEOUT_S}s")


@pytest.mark.parametrize("name", sorted(p.stem for p in API_DIR.glob("*.json")))
def test_workflow_runs_in_comfyui(comfyui, name):
    from wan_core.video_io import read_video

    api = override_api(load_json(API_DIR / f"{name}.json"), SMALL)
    answer = _post(f"{comfyui['base']}/prompt", {"prompt": api, "client_id": uuid.uuid4().hex})
    entry = _wait_for_history(comfyui["base"], answer["prompt_id"])
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[-4000:]
    saved = [img for out in entry["outputs"].values() for img in out.get("images", [])]
    assert len(saved) == 1, entry["outputs"]
    path = comfyui["outputs"] / saved[0]["subfolder"] / saved[0]["filename"]
    frames, _fps = read_video(path)
    assert frames.shape[0] == SMALL["length"]
