"""End to end inside a real ComfyUI (0.3.64 or later) on CPU, with tiny checkpoints.

Runs only when ``COMFYUI_PATH`` points at a ComfyUI checkout; ComfyUI itself runs with
``$COMFYUI_PYTHON`` (default: the Python running pytest), which needs ComfyUI's requirements
and this pack's requirements.txt. The test links this pack into ``custom_nodes`` (removed
afterwards), writes tiny models and an ``extra_model_paths.yaml``, starts ``main.py --cpu`` on a
free port and checks, against the running server:

* ``/object_info`` lists every node of ours, with our categories, descriptions and tooltips;
  ``/extensions`` serves our JS; the log shows no import failure;
* every UI workflow would load in the editor: node types known, widget values in the
  frontend's order and count (``control_after_generate`` after a seed, the upload button
  after LoadImage's widgets), combo values offered, numbers in range, link types matching,
  and converted by those rules it equals its API twin;
* every API workflow (32x32, 5 frames, 2 steps) runs through ``/prompt`` (polling ``/history``)
  and writes a 5-frame video, previewable, from which the editor's reader gets the workflow back;
  a native ``SaveLatent`` on each sampler output checks that our LATENT is the
  ``{"samples": [B, C, T, h, w]}`` ComfyUI's own Wan latents are;
* a native ``EmptyHunyuanLatentVideo`` latent has the same shape as ours and decodes with ours;
* ComfyUI's own VAEEncode/VAEDecode and ours, on one released-width Wan2.1 VAE file, give the
  same LATENT and decode each other's LATENT to the same frames;
* over ``/ws`` (the editor's channel) the sampler reports progress to its last step; it sends JPEG
  live previews only when ComfyUI runs with a ``--preview-method`` (a second server checks that);
* ``/interrupt`` during sampling (LoRAs attached) ends the prompt as interrupted, and the cached
  model then reproduces the latent of an earlier run exactly.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from comfyui_frontend import link_problems, mp4_editor_metadata, node_problems, schema_problems
from comfyui_server import LINK_NAME, ComfyUIProcess, comfyui_path, pack_linked, tiny_model_folder
from comfyui_server import get_json as _get
from conftest import ROOT
from workflow_tools import API_DIR, VIRTUAL_NODES, WORKFLOWS, load_json, override_api

from wan_queue.convert import ui_to_api

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

SMALL = {"width": 32, "height": 32, "length": 5, "steps": 2}
RUN_TIMEOUT_S = 600
REAL_VAE = "wan21_vae_released_width.safetensors"
GGUF_DIT = "wan2.1_t2v_1.3B-Q4_K_M.gguf"  # the tiny T2V DiT as a GGUF (K-quant / Q8_0 blocks)


def _write_released_width_vae(path: Path) -> None:
    """A Wan2.1 VAE at the released width (base 96, random bf16 weights, 254 MB): ComfyUI's own VAELoader
    hard-codes that width, so this is the file both VAE implementations can load."""
    import dataclasses

    import torch
    from safetensors.torch import save_file

    from wan_core.tiny_models import TINY
    from wan_core.vae.tiny import tiny_vae_state_dict

    sizes = dataclasses.replace(TINY, vae21_base_dim=96)
    save_file(tiny_vae_state_dict("2.1", seed=5, sizes=sizes, dtype=torch.bfloat16), str(path))


def _post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
            return json.loads(body) if body else {}
    except urllib.error.HTTPError as exc:  # ComfyUI answers 400 with the validation errors
        raise AssertionError(f"/prompt rejected the workflow: {exc.read().decode(errors='replace')}") from exc


def _write_gguf_dit(folder: Path, name: str) -> None:
    """The tiny T2V DiT file (ComfyUI key names) converted to GGUF with `gguf`'s writer."""
    from quant_helpers import block_linear_types, write_gguf
    from safetensors.torch import load_file

    sd = {k: v.float() for k, v in load_file(str(folder / "wan2.1_t2v_1.3B_bf16.safetensors")).items()}
    prefix = "model.diffusion_model."
    types = block_linear_types({k.removeprefix(prefix): v for k, v in sd.items()}, ("Q4_K", "Q6_K", "Q8_0"))
    write_gguf(folder / name, sd, {prefix + k: t for k, t in types.items()})


@pytest.fixture(scope="module")
def comfyui_files(tmp_path_factory):
    """Tiny models and extra_model_paths.yaml, and this pack linked into custom_nodes (shared by the servers)."""
    root = comfyui_path()
    work = tmp_path_factory.mktemp("comfyui_real")
    tiny_model_folder(work)
    _write_released_width_vae(work / "models" / "vae" / REAL_VAE)
    _write_gguf_dit(work / "models" / "diffusion_models", GGUF_DIT)
    with pack_linked(root):
        yield {"root": root, "work": work}


def _start_comfyui(files: dict, name: str, extra_args: tuple[str, ...] = ()):
    """Start ``main.py --cpu`` with this pack only; yields {base, outputs, log, info}."""
    server = ComfyUIProcess(
        files["root"], files["work"] / name, files["work"] / "extra_model_paths.yaml", extra_args=extra_args
    )
    shutil.copytree(WORKFLOWS / "inputs", server.inputs)
    try:
        server.start()
        info = _get(f"{server.base}/object_info", timeout=120)
        yield {"base": server.base, "outputs": server.outputs, "log": server.log_path, "info": info}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def comfyui(comfyui_files):
    """A server with ComfyUI's defaults (no --preview-method: no live previews)."""
    yield from _start_comfyui(comfyui_files, "default")


@pytest.fixture(scope="module")
def comfyui_previews(comfyui_files):
    """A second server started with --preview-method latent2rgb (started only for the preview test)."""
    yield from _start_comfyui(comfyui_files, "previews", ("--preview-method", "latent2rgb", "--preview-size", "256"))


# --------------------------------------------------------------------------- registration


def test_object_info_lists_every_node_with_our_tooltips(comfyui):
    import nodes

    info, log = comfyui["info"], comfyui["log"].read_text()
    missing = sorted(set(nodes.NODE_CLASS_MAPPINGS) - set(info))
    assert not missing, f"not registered in ComfyUI: {missing}\n{log[-3000:]}"
    assert "IMPORT FAILED" not in log and "failed to import" not in log, log[-3000:]
    for node_id, cls in nodes.NODE_CLASS_MAPPINGS.items():
        served = info[node_id]
        assert served["category"] == cls.CATEGORY and served["category"].startswith("Wan video")
        assert served["display_name"] == nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id]
        assert served["description"] == cls.DESCRIPTION and served["description"], node_id
        assert served["output"] == list(cls.RETURN_TYPES), node_id
        if hasattr(cls, "OUTPUT_TOOLTIPS"):
            assert served["output_tooltips"] == list(cls.OUTPUT_TOOLTIPS), node_id
        ours = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            assert served["input_order"].get(section, []) == list(ours.get(section, {})), (node_id, section)
            for name, spec in ours.get(section, {}).items():
                tooltip = served["input"][section][name][1].get("tooltip")
                assert tooltip and tooltip == spec[1]["tooltip"], (node_id, name, tooltip)
    load_video = info["WanCoreLoadVideo"]["input"]["required"]["video"]
    assert load_video[1].get("video_upload") is True, load_video  # the editor's upload button + video preview
    assert load_video[1].get("video_upload") == info["LoadVideo"]["input"]["required"]["file"][1].get("video_upload")


def test_extension_js_is_served(comfyui):
    served = _get(f"{comfyui['base']}/extensions")
    ours = sorted(p.name for p in (ROOT / "js").glob("*.js"))
    assert ours, "the pack ships no JS"
    for name in ours:
        url = f"/extensions/{LINK_NAME}/{name}"
        assert url in served, f"{url} not in {served}"
        with urllib.request.urlopen(comfyui["base"] + url, timeout=30) as response:
            assert response.status == 200 and response.read()
        for spec in re.findall(r"""from\s+["'](\.{1,2}/[^"']+)["']""", (ROOT / "js" / name).read_text()):
            target = urllib.parse.urljoin(comfyui["base"] + url, spec)  # as the browser resolves it
            with urllib.request.urlopen(target, timeout=30) as response:
                assert response.status == 200 and "javascript" in response.headers["Content-Type"], target


# --------------------------------------------------------------------------- editor (frontend rules)


@pytest.mark.parametrize("name", sorted(p.stem for p in WORKFLOWS.glob("*.json")))
def test_ui_workflow_loads_in_the_editor(comfyui, name):
    info, workflow = comfyui["info"], load_json(WORKFLOWS / f"{name}.json")
    unknown = sorted({n["type"] for n in workflow["nodes"]} - set(info) - set(VIRTUAL_NODES))
    assert not unknown, f"the editor would show these as missing: {unknown}"
    problems = [
        p for n in workflow["nodes"] if n["type"] not in VIRTUAL_NODES for p in node_problems(n, info[n["type"]])
    ]
    problems += link_problems(workflow, info) + schema_problems(workflow)
    assert not problems, "\n".join(problems)
    assert ui_to_api(workflow, info) == load_json(API_DIR / f"{name}.json")  # titles: the served display names


# --------------------------------------------------------------------------- execution


def _wait_for_history(base: str, prompt_id: str) -> dict:
    deadline = time.time() + RUN_TIMEOUT_S
    while time.time() < deadline:
        history = _get(f"{base}/history/{prompt_id}")
        entry = history.get(prompt_id, {})
        if entry.get("status", {}).get("status_str") in ("success", "error"):
            return entry
        time.sleep(0.5)
    raise AssertionError(f"prompt {prompt_id} did not finish within {RUN_TIMEOUT_S}s")


def _run(comfyui: dict, api: dict, workflow: dict | None = None) -> dict:
    """Queue ``api`` (with the UI ``workflow`` as the editor sends it, for the savers' metadata); wait for success."""
    payload = {"prompt": api, "client_id": uuid.uuid4().hex}
    if workflow is not None:
        payload["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
    answer = _post(f"{comfyui['base']}/prompt", payload)
    entry = _wait_for_history(comfyui["base"], answer["prompt_id"])
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"], indent=1)[-4000:]
    return entry


def _saved(comfyui: dict, entry: dict, node_id: str, kind: str) -> list[Path]:
    files = entry["outputs"].get(node_id, {}).get(kind, [])
    return [comfyui["outputs"] / f["subfolder"] / f["filename"] for f in files]


def _check_editor_preview(comfyui: dict, entry: dict) -> None:
    """The saver's UI output is what the editor previews: animated, served by /view as a video."""
    (out,) = [o for o in entry["outputs"].values() if "images" in o and "animated" in o]  # not PreviewImage
    assert out.get("animated") == [True], out
    query = urllib.parse.urlencode({k: out["images"][0][k] for k in ("filename", "subfolder", "type")})
    with urllib.request.urlopen(f"{comfyui['base']}/view?{query}", timeout=30) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("video/"), response.headers
        assert len(response.read()) > 100


def _without_is_changed(prompt: dict | None) -> dict | None:
    """The prompt as queued: ComfyUI adds each node's IS_CHANGED result ("is_changed") before saving it."""
    if prompt is None:
        return None
    return {nid: {k: v for k, v in node.items() if k != "is_changed"} for nid, node in prompt.items()}


def _latent_tensor(path: Path):
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    assert "latent_tensor" in tensors, sorted(tensors)
    return tensors["latent_tensor"]


def _native_video_latent_shape(channels: int) -> list[int]:
    """Shape of ComfyUI's own Wan latents for SMALL (EmptyHunyuanLatentVideo: 16 ch /8; Wan22 TI2V: 48 ch /16)."""
    down = 16 if channels == 48 else 8
    return [1, channels, (SMALL["length"] - 1) // 4 + 1, SMALL["height"] // down, SMALL["width"] // down]


@pytest.mark.parametrize("model_name, weight_dtype", [(GGUF_DIT, "auto"), ("wan2.1_t2v_1.3B_bf16.safetensors", "int8")])
def test_gguf_and_int8_dits_run_from_the_model_loader(comfyui, model_name, weight_dtype):
    """The loader lists .gguf files (ComfyUI's own lists leave them out) and both quantised paths sample."""
    assert GGUF_DIT in comfyui["info"]["WanCoreModelLoader"]["input"]["required"]["model_name"][0]
    api = override_api(load_json(API_DIR / "wan21_t2v_1.3b.json"), SMALL)
    (loader,) = [nid for nid, n in api.items() if n["class_type"] == "WanCoreModelLoader"]
    api[loader]["inputs"].update(model_name=model_name, weight_dtype=weight_dtype)
    entry = _run(comfyui, api)
    videos = [p for nid in entry["outputs"] for p in _saved(comfyui, entry, nid, "images")]
    assert len(videos) == 1 and videos[0].stat().st_size > 100, entry["outputs"]
    assert entry["outputs"][loader]["text"] == ["wan2.1-t2v"]


@pytest.mark.parametrize("name", sorted(p.stem for p in API_DIR.glob("*.json")))
def test_workflow_runs_in_comfyui(comfyui, name):
    from wan_core.video_io import read_video

    api = override_api(load_json(API_DIR / f"{name}.json"), SMALL)
    samplers = [nid for nid, n in api.items() if n["class_type"] == "WanCoreSampler"]
    for nid in samplers:  # a native node on our LATENT
        api[f"{nid}900"] = {
            "class_type": "SaveLatent",
            "inputs": {"samples": [nid, 0], "filename_prefix": f"lat/{name}"},
        }
    workflow = load_json(WORKFLOWS / f"{name}.json")
    entry = _run(comfyui, api, workflow)
    savers = [nid for nid in entry["outputs"] if api.get(nid, {}).get("class_type") == "WanCoreSaveVideo"]
    videos = [p for nid in savers for p in _saved(comfyui, entry, nid, "images")]
    assert len(videos) == 1, entry["outputs"]
    _check_editor_preview(comfyui, entry)
    dropped = mp4_editor_metadata(videos[0].read_bytes())  # what the editor reads from the file dropped on it
    assert dropped.get("workflow") == workflow and _without_is_changed(dropped.get("prompt")) == api, sorted(dropped)
    frames, _fps = read_video(videos[0])
    assert frames.shape[0] == SMALL["length"], f"{videos[0]}: {tuple(frames.shape)}"
    (loader,) = [nid for nid, n in api.items() if n["class_type"] == "WanCoreModelLoader"]
    badge = entry["outputs"].get(loader, {}).get("text", [""])[0]  # drawn on the node by js/wan_core.js
    assert badge.startswith("wan2"), entry["outputs"].get(loader)
    if name.startswith("wan22_a14b"):  # the expert pair is named, not the Wan2.1-identical T2V expert alone
        assert badge.startswith("wan2.2-") and badge.endswith("(high + low noise experts)"), badge
    assert samplers
    for nid in samplers:
        (path,) = _saved(comfyui, entry, f"{nid}900", "latents")
        samples = _latent_tensor(path)
        assert list(samples.shape) == _native_video_latent_shape(samples.shape[1]), (name, tuple(samples.shape))
        assert samples.isfinite().all()


def test_native_latent_matches_ours_and_decodes(comfyui):
    """EmptyHunyuanLatentVideo (what ComfyUI's Wan2.1 graphs start from) vs our empty latent, same settings."""
    from wan_core.video_io import read_video

    vae_name = next(
        n["inputs"]["vae_name"]
        for n in load_json(API_DIR / "wan21_t2v_1.3b.json").values()
        if n["class_type"] == "WanCoreVAELoader"
    )
    size = {k: SMALL[k] for k in ("width", "height", "length")}
    api = {
        "1": {"class_type": "WanCoreVAELoader", "inputs": {"vae_name": vae_name, "dtype": "auto"}},
        "2": {"class_type": "WanCoreEmptyVideoLatent", "inputs": {"vae": ["1", 0], **size}},
        "3": {"class_type": "SaveLatent", "inputs": {"samples": ["2", 1], "filename_prefix": "interop/ours"}},
        "4": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {**size, "batch_size": 1}},
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "interop/native"}},
        "6": {
            "class_type": "WanCoreVAEDecode",
            "inputs": {"vae": ["1", 0], "latent": ["4", 0], "tiled": False, "tile_size": 256, "tile_overlap": 64},
        },
        "7": {
            "class_type": "WanCoreSaveVideo",
            "inputs": {
                "frames": ["6", 0],
                "fps": 16.0,
                "crf": 19,
                "filename_prefix": "interop/decoded",
                "format": "mp4",
            },
        },
        "8": {"class_type": "CreateVideo", "inputs": {"images": ["6", 0], "fps": 16.0}},
        "9": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["8", 0], "filename_prefix": "interop/native", "format": "mp4", "codec": "h264"},
        },
    }
    workflow = {"nodes": [], "links": [], "marker": "interop"}
    entry = _run(comfyui, api, workflow)
    # the editor's reader (ported) finds the workflow in ComfyUI's own SaveVideo file and in ours alike
    for nid in ("7", "9"):
        dropped = mp4_editor_metadata(_saved(comfyui, entry, nid, "images")[0].read_bytes())
        assert dropped.get("workflow") == workflow and _without_is_changed(dropped.get("prompt")) == api, (nid, dropped)
    ours, native = (_latent_tensor(_saved(comfyui, entry, nid, "latents")[0]) for nid in ("3", "5"))
    assert ours.shape == native.shape and ours.dtype == native.dtype, (ours.shape, native.shape, ours.dtype)
    frames, _fps = read_video(_saved(comfyui, entry, "7", "images")[0])
    assert frames.shape[0] == SMALL["length"]


def _lora_run(name: str, seed: int, sizes: dict) -> dict:
    api = override_api(load_json(API_DIR / "wan21_t2v_lora_stack.json"), {**sizes, "seed": seed})
    (sampler,) = [nid for nid, n in api.items() if n["class_type"] == "WanCoreSampler"]
    api["900"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler, 0], "filename_prefix": f"lat/{name}"}}
    return api


def _interrupt_while_sampling(comfyui: dict, api: dict) -> dict:
    prompt_id = _post(f"{comfyui['base']}/prompt", {"prompt": api, "client_id": uuid.uuid4().hex})["prompt_id"]
    deadline = time.time() + RUN_TIMEOUT_S
    while not any(item[1] == prompt_id for item in _get(f"{comfyui['base']}/queue")["queue_running"]):
        assert time.time() < deadline and prompt_id not in _get(f"{comfyui['base']}/history/{prompt_id}"), (
            "the long run finished before it could be interrupted: make it longer"
        )
        time.sleep(0.1)
    time.sleep(1.0)  # loaders and text encoder are cached: now inside the sampler
    _post(f"{comfyui['base']}/interrupt", {"prompt_id": prompt_id})
    return _wait_for_history(comfyui["base"], prompt_id)


def test_interrupt_leaves_the_cached_model_clean(comfyui):
    """Interrupt (the editor's Cancel) in the sampler with LoRAs attached; the same small run gives the same latent."""
    before = _run(comfyui, _lora_run("before", 7, SMALL))
    long_sizes = {"width": 192, "height": 192, "length": 25, "steps": 200}
    entry = _interrupt_while_sampling(comfyui, _lora_run("long", 8, long_sizes))
    events = dict(entry["status"]["messages"])
    assert entry["status"]["status_str"] == "error" and "execution_interrupted" in events, entry["status"]
    assert events["execution_interrupted"]["node_type"] == "WanCoreSampler", events["execution_interrupted"]
    after = _run(comfyui, _lora_run("after", 7, SMALL))
    a, b = (_latent_tensor(_saved(comfyui, e, "900", "latents")[0]) for e in (before, after))
    assert a.shape == b.shape and (a == b).all(), f"max diff {(a - b).abs().max().item()}"


def _png_frames(paths: list[Path]):
    import numpy as np
    from PIL import Image

    return np.stack([np.asarray(Image.open(p).convert("RGB"), dtype=np.int16) for p in sorted(paths)])


def test_native_vae_and_ours_share_the_latent_convention(comfyui):
    """ComfyUI's VAEEncode/VAEDecode and ours, same released-width Wan2.1 VAE file, 5 frames 32x32:
    the LATENTs agree (both the raw VAE mean) and each side decodes the other's LATENT to the same frames."""
    from conftest import rel_err

    fit = {"width": 32, "height": 32, "mode": "crop"}
    tiles = {"tiled": False, "tile_size": 256, "tile_overlap": 64}
    api = {
        "1": {"class_type": "WanCoreVAELoader", "inputs": {"vae_name": REAL_VAE, "dtype": "fp32"}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": REAL_VAE}},
        "3": {"class_type": "WanCoreLoadVideo", "inputs": {"video": "control.mp4", "max_frames": 0}},
        "4": {
            "class_type": "WanCoreResampleFrames",
            "inputs": {"frames": ["3", 0], "source_fps": ["3", 1], "target_fps": 16.0, "length": 5, "use_length": True},
        },
        "5": {"class_type": "WanCoreFitFrames", "inputs": {"frames": ["4", 0], **fit}},
        "6": {"class_type": "WanCoreVAEEncode", "inputs": {"vae": ["1", 0], "frames": ["5", 0], **tiles}},
        "7": {"class_type": "VAEEncode", "inputs": {"vae": ["2", 0], "pixels": ["5", 0]}},
        "8": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "vae/ours"}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0], "filename_prefix": "vae/native"}},
        "10": {"class_type": "VAEDecode", "inputs": {"vae": ["2", 0], "samples": ["6", 0]}},
        "11": {"class_type": "WanCoreVAEDecode", "inputs": {"vae": ["1", 0], "latent": ["7", 0], **tiles}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "vae/native_of_ours"}},
        "13": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": "vae/ours_of_native"}},
    }
    entry = _run(comfyui, api)
    ours, native = (_latent_tensor(_saved(comfyui, entry, nid, "latents")[0]).float() for nid in ("8", "9"))
    assert list(ours.shape) == _native_video_latent_shape(16), ours.shape
    assert ours.shape == native.shape and rel_err(ours, native) < 1e-4, (
        ours.shape,
        native.shape,
        rel_err(ours, native),
    )
    native_of_ours, ours_of_native = (_png_frames(_saved(comfyui, entry, nid, "images")) for nid in ("12", "13"))
    assert native_of_ours.shape == ours_of_native.shape == (SMALL["length"], 32, 32, 3), native_of_ours.shape
    inside = ((native_of_ours > 0) & (native_of_ours < 255)).mean()
    assert inside > 0.5 and native_of_ours.std() > 5, (inside, native_of_ours.std())  # not saturated or flat
    diff = abs(native_of_ours - ours_of_native)
    assert diff.max() <= 2 and diff.mean() < 0.2, (diff.max(), diff.mean())


def _watch_sampler(server: dict) -> tuple[str, str, list, list]:
    """Queue a 4-step T2V run and read /ws as the editor does: (done event, sampler id, progress, previews)."""
    from comfyui_ws import ComfyWebSocket, preview_image

    steps, client_id = 4, uuid.uuid4().hex
    api = override_api(load_json(API_DIR / "wan21_t2v_1.3b.json"), {**SMALL, "steps": steps, "seed": 11})
    (sampler,) = [nid for nid, n in api.items() if n["class_type"] == "WanCoreSampler"]
    host, port = server["base"].removeprefix("http://").split(":")
    ws = ComfyWebSocket(host, int(port), client_id)
    try:
        prompt_id = _post(f"{server['base']}/prompt", {"prompt": api, "client_id": client_id})["prompt_id"]
        progress, previews, done = [], [], None
        while done is None:
            message = ws.receive()
            if isinstance(message, bytes):
                previews += [p for p in [preview_image(message)] if p is not None]
            elif message.get("data", {}).get("prompt_id") == prompt_id:
                kind, data = message["type"], message["data"]
                if kind == "progress" and data["node"] == sampler:
                    progress.append((data["value"], data["max"]))
                done = kind if kind in ("execution_success", "execution_error", "execution_interrupted") else None
    finally:
        ws.close()
    print(f"sampler progress {progress}; {len(previews)} previews, sizes {[im.size for _m, im in previews]}")
    assert done == "execution_success", done
    assert progress and progress[-1] == (steps, steps), progress
    return done, sampler, progress, previews


def test_sampler_reports_progress_and_no_previews_without_preview_method(comfyui):
    """ComfyUI's default --preview-method is none: our sampler then sends progress but no preview images,
    as ComfyUI's own samplers do (API clients would take previews for outputs)."""
    _done, _sampler, _progress, previews = _watch_sampler(comfyui)
    assert previews == [], f"{len(previews)} previews sent although ComfyUI runs without --preview-method"


def test_sampler_sends_live_previews_with_preview_method(comfyui_previews):
    """With --preview-method latent2rgb the editor gets a JPEG preview of the sampler, within --preview-size."""
    _done, sampler, _progress, previews = _watch_sampler(comfyui_previews)
    assert previews, "no live preview reached the editor"
    for metadata, image in previews:
        assert metadata.get("node_id", sampler) == sampler and image.format == "JPEG" and min(image.size) >= 1
        assert max(image.size) <= 256
