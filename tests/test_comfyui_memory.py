"""Our models under a real ComfyUI's memory manager (CPU, tiny models, 32x32, 5 frames).

Runs only when ``COMFYUI_PATH`` points at a ComfyUI checkout (see tests/comfyui_server.py).
What ComfyUI's manager holds is read from ``/wan_core/memory`` (our route: its
``current_loaded_models``, ours marked, and the server's RSS); the RSS is also read from the
server process itself.

* after a run our DiT, VAE and umT5 are in ``current_loaded_models``; ``/free`` with
  ``unload_models`` drops them; the next run brings them back (cached loader outputs, no
  reload from disk) and the first seed again gives the same video, byte for byte;
* 20 queued runs of the graph (a new seed each, as the editor's "randomize" queues them:
  an unchanged prompt would be answered from ComfyUI's cache) leave the server's RSS within
  5% of its value after the first run, with one copy of each model still registered.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest
from comfyui_server import ComfyUIProcess, comfyui_path, pack_linked, tiny_model_folder
from comfyui_server import get_json as _get
from workflow_tools import API_DIR, load_json, override_api

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

SMALL = {"width": 32, "height": 32, "length": 5, "steps": 1}
OURS = {"WanDiT", "WanVAE", "UMT5Encoder"}
RUNS = 20
RSS_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory):
    root = comfyui_path()
    work = tmp_path_factory.mktemp("comfyui_memory")
    server = ComfyUIProcess(root, work, tiny_model_folder(work))
    with pack_linked(root), pytest.MonkeyPatch.context() as env:
        env.setenv("WAN_CORE_CACHE", str(work / "cache"))  # a fresh prompt cache: the first run loads umT5
        try:
            server.start()
            yield server
        finally:
            server.stop()


def _graph(seed: int) -> dict:
    api = override_api(load_json(API_DIR / "wan21_t2v_1.3b.json"), {**SMALL, "seed": seed})
    for node in api.values():
        if node["class_type"] == "WanCoreSaveVideo":
            node["inputs"]["filename_prefix"] = f"memory/seed{seed}"
    return api


def _queue(server: ComfyUIProcess, api: dict) -> str:
    body = json.dumps({"prompt": api, "client_id": uuid.uuid4().hex}).encode()
    request = urllib.request.Request(f"{server.base}/prompt", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["prompt_id"]


def _wait(server: ComfyUIProcess, prompt_id: str, timeout_s: float = 600) -> dict:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        entry = _get(f"{server.base}/history/{prompt_id}").get(prompt_id, {})
        status = entry.get("status", {}).get("status_str")
        if status == "success":
            return entry
        assert status != "error", json.dumps(entry.get("status"), indent=1)[-3000:]
        time.sleep(0.3)
    raise AssertionError(f"prompt {prompt_id} did not finish in {timeout_s:.0f} s")


def _video(server: ComfyUIProcess, entry: dict) -> bytes:
    (files,) = [out["images"] for out in entry["outputs"].values() if "images" in out]
    return (server.outputs / files[0]["subfolder"] / files[0]["filename"]).read_bytes()


def _ours(server: ComfyUIProcess) -> list[dict]:
    """Our entries in ComfyUI's current_loaded_models."""
    return [m for m in _get(f"{server.base}/wan_core/memory")["loaded_models"] if m["ours"]]


def _free(server: ComfyUIProcess) -> None:
    """POST /free (ComfyUI sets a flag that its prompt loop reads after it wakes or finishes a prompt)."""
    body = json.dumps({"unload_models": True}).encode()
    request = urllib.request.Request(f"{server.base}/free", data=body, headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()


def _free_until_unloaded(server: ComfyUIProcess, timeout_s: float = 60.0, repost_after_s: float = 5.0) -> bool:
    """/free, then wait until our models are gone; post again only after ``repost_after_s`` without effect.

    Why both: the loop can miss the wake-up of a /free that arrives while it is busy (collecting garbage),
    and would then see it only at its next prompt, so a lost one is posted again. But a second /free posted
    while the first is still being acted on stays pending and unloads the models after the next prompt,
    so it is not posted again sooner.
    """
    deadline = time.time() + timeout_s
    posted = 0.0
    while time.time() < deadline:
        if not _ours(server):
            return True
        if time.time() - posted >= repost_after_s:
            _free(server)
            posted = time.time()
        time.sleep(0.5)
    return not _ours(server)


def test_free_unloads_our_models_and_the_next_run_reloads_them(comfyui):
    first = _video(comfyui, _wait(comfyui, _queue(comfyui, _graph(seed=1))))
    loaded = _ours(comfyui)
    assert {m["name"] for m in loaded} == OURS, loaded
    assert all(m["size"] > 0 and m["loaded"] == m["size"] for m in loaded), loaded  # CPU: loaded whole
    assert _free_until_unloaded(comfyui), f"/free left {_ours(comfyui)} loaded"
    _wait(comfyui, _queue(comfyui, _graph(seed=2)))  # the sampler and VAE run again: the manager reloads them
    assert {m["name"] for m in _ours(comfyui)} == {"WanDiT", "WanVAE"}  # umT5: its prompt is cached, not rerun
    assert comfyui.log_path.read_text().count("Loaded wan2.1-t2v") == 1  # moved back in, not read again
    again = _video(comfyui, _wait(comfyui, _queue(comfyui, _graph(seed=1))))
    assert again == first, "after /free the same seed gave a different video"


def test_rss_stays_flat_over_twenty_queued_runs(comfyui):
    import psutil

    process = psutil.Process(comfyui.process.pid)
    _wait(comfyui, _queue(comfyui, _graph(seed=100)))
    after_first = process.memory_info().rss
    ids = [_queue(comfyui, _graph(seed=101 + i)) for i in range(RUNS - 1)]
    for prompt_id in ids:
        _wait(comfyui, prompt_id)
    after_all = process.memory_info().rss
    growth = after_all / after_first - 1.0
    print(f"server RSS after the first run {after_first / 2**20:.0f} MiB, after {RUNS}: {after_all / 2**20:.0f} MiB")
    assert growth <= RSS_TOLERANCE, f"RSS grew {growth:.1%} over {RUNS} runs"
    names = sorted(m["name"] for m in _ours(comfyui))
    assert names == sorted(OURS - {"UMT5Encoder"}) or names == sorted(OURS), names  # one copy of each
    reported = _get(f"{comfyui.base}/wan_core/memory")["rss"]
    assert abs(reported - after_all) / after_all < 0.05  # the route reports the server's own RSS


def test_two_loaders_of_one_file_hold_one_copy(comfyui):
    """A second Model Loader on the same file (another sampler, other run settings) shares the first one's DiT."""
    api = _graph(seed=300)
    (loader,) = [k for k, v in api.items() if v["class_type"] == "WanCoreModelLoader"]
    (sampler,) = [k for k, v in api.items() if v["class_type"] == "WanCoreSampler"]
    api["900"] = {**api[loader], "inputs": {**api[loader]["inputs"], "attention": "sdpa"}}
    api["901"] = {**api[sampler], "inputs": {**api[sampler]["inputs"], "model": ["900", 0], "seed": 301}}
    api["902"] = {"class_type": "SaveLatent", "inputs": {"samples": ["901", 0], "filename_prefix": "memory/second"}}
    _wait(comfyui, _queue(comfyui, api))
    names = [m["name"] for m in _ours(comfyui)]
    assert names.count("WanDiT") == 1, names


def test_memory_benchmark_smoke(tmp_path):
    """benchmarks/bench_memory.py --smoke: the GPU benchmark's whole flow on tiny models (two servers, our
    14B-shaped runs, the A14B pair, a native UNETLoader + KSampler, ours again), so it does not rot."""
    import subprocess
    import sys

    from comfyui_server import comfyui_python
    from conftest import ROOT

    root = comfyui_path()
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_memory.py"), "--comfyui", str(root)]
    command += ["--python", comfyui_python(), "--smoke", "--work", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "PASS: every prompt finished" in done.stdout, (
        done.stdout[-3000:] + done.stderr[-3000:]
    )
