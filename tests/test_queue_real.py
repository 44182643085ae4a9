"""``python -m wan_queue`` against real ComfyUI servers (CPU, tiny models, 32x32, 5 frames, 2 steps).

Skipped with the reason when ``COMFYUI_PATH`` is unset (tests/comfyui_server.py). Two servers run from one
checkout on their own ports, input and output folders (empty input folders: the queue tool uploads what
the workflows need):

* a 2 prompts x 2 seeds batch of the UI-format T2V workflow; the server is killed (SIGKILL) after the first
  job and started again: the manifest ends with 4 completed jobs and 4 playable videos, and a second run
  queues nothing;
* two servers share a 6-job batch of the TI2V API workflow (its start image uploaded to each);
* a missing model file is reported with its model folder, unknown node types by name.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from comfyui_server import ComfyUIProcess, comfyui_path, get_json, pack_linked, tiny_model_folder
from conftest import ROOT
from workflow_tools import API_DIR, WORKFLOWS

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

SMALL = ["--set", "width=32", "--set", "height=32", "--set", "length=5", "--set", "steps=2"]
RUN_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = comfyui_path()
    work = tmp_path_factory.mktemp("queue_real")
    yaml = tiny_model_folder(work)
    pair = [ComfyUIProcess(root, work / name, yaml) for name in ("a", "b")]
    with pack_linked(root):
        try:
            for server in pair:
                server.start(wait=False)
            for server in pair:
                server.wait_until_up()
            yield pair
        finally:
            for server in pair:
                server.stop()


def _queue_cmd(workflow: Path, out: Path, servers: list[ComfyUIProcess], *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "wan_queue", "run", str(workflow), "--out", str(out), "--no-progress"]
    return cmd + [a for s in servers for a in ("--server", f"127.0.0.1:{s.port}")] + SMALL + list(extra)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    print(result.stderr[-3000:])
    return result


def _manifest(out: Path) -> list[dict]:
    path = out / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _completed(out: Path) -> list[dict]:
    return [r for r in _manifest(out) if r["status"] == "completed"]


def _check_videos(out: Path, records: list[dict]) -> None:
    from wan_core.video_io import read_video

    for record in records:
        (video,) = [o for o in record["outputs"] if o["file"].endswith(".mp4")]
        path = out / video["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == video["sha256"]
        frames, _fps = read_video(path)
        assert tuple(frames.shape) == (5, 32, 32, 3), (path, tuple(frames.shape))


def _history_size(server: ComfyUIProcess) -> int:
    return len(get_json(f"{server.base}/history"))


def test_batch_survives_a_server_restart_and_resumes_to_nothing(servers, tmp_path):
    server = servers[0]
    out = tmp_path / "out"
    sweep = ["--sweep", 'positive=["a red fox","a blue bird"]', "--seeds", "1-2", "--give-up-after", "300"]
    cmd = _queue_cmd(WORKFLOWS / "wan21_t2v_1.3b.json", out, [server], *sweep)  # UI format: converted
    log = tmp_path / "queue.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(cmd, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + RUN_TIMEOUT_S
        while not _completed(out):
            assert process.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        server.kill()
        in_flight = len(_completed(out))
        server.start()
        assert process.wait(timeout=RUN_TIMEOUT_S) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    print(text[-3000:])
    assert in_flight < 4, "the batch finished before the server was killed: nothing was tested"
    assert "queueing it again" in text, text[-3000:]
    done = _completed(out)
    assert len(done) == 4 and len({r["job"] for r in done}) == 4
    assert {(r["params"]["positive"], r["params"]["seed"]) for r in done} == {
        (p, s) for p in ("a red fox", "a blue bird") for s in (1, 2)
    }
    _check_videos(out, done)
    lines, history = len(_manifest(out)), _history_size(server)
    again = _run(cmd)
    assert again.returncode == 0 and "0 prompts queued" in again.stdout, again.stdout + again.stderr[-2000:]
    assert len(_manifest(out)) == lines and _history_size(server) == history


def test_two_servers_share_a_batch(servers, tmp_path):
    out = tmp_path / "out"
    result = _run(_queue_cmd(API_DIR / "wan22_ti2v_5b.json", out, servers, "--seeds", "1-6"))
    assert result.returncode == 0, result.stderr[-3000:]
    done = _completed(out)
    assert len(done) == 6 and len({r["job"] for r in done}) == 6
    used = {r["server"] for r in done}
    assert used == {s.base for s in servers}, used
    _check_videos(out, done)
    for server in servers:  # the start image, uploaded under its content name
        assert [p.name for p in server.inputs.iterdir() if p.name.startswith("start-")], server.inputs


def test_missing_model_and_unknown_nodes_are_named(servers, tmp_path):
    server = servers[0]
    missing = _run(
        _queue_cmd(
            API_DIR / "wan21_t2v_1.3b.json", tmp_path / "o1", [server], "--set", "model_name=wan_nope.safetensors"
        )
    )
    assert missing.returncode == 1
    assert "(WanCoreModelLoader" in missing.stderr and "input 'model_name'" in missing.stderr, missing.stderr
    assert "'wan_nope.safetensors' is missing" in missing.stderr and "models/diffusion_models/" in missing.stderr
    workflow = json.loads((API_DIR / "wan21_t2v_1.3b.json").read_text())
    workflow["99"] = {"class_type": "SomeUninstalledPackNode", "inputs": {}}
    path = tmp_path / "needs_a_pack.json"
    path.write_text(json.dumps(workflow))
    unknown = _run(_queue_cmd(path, tmp_path / "o2", [server]))
    assert unknown.returncode == 1 and "SomeUninstalledPackNode" in unknown.stderr, unknown.stderr
