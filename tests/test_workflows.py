"""Shipped workflows: valid against our node definitions, in sync with their API twins and the
build script, official sampler defaults, and every one runs end to end on tiny checkpoints."""

from __future__ import annotations

import copy
import importlib.util

import pytest
from comfyui_frontend import schema_problems
from workflow_tools import (
    API_DIR,
    WORKFLOWS,
    execute_api,
    load_json,
    override_api,
    ui_to_api,
    validate_ui,
)

from wan_core.configs import defaults_for
from wan_core.tiny_models import TINY_FILES

NAMES = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
EXPECTED = {
    # workflow: (family, task, size label) of its model, for the official defaults (WAN_SPEC 7.5)
    "wan21_t2v_1.3b": ("wan2.1", "t2v", "1.3b"),
    "wan21_t2v_14b": ("wan2.1", "t2v", "14b"),
    "wan21_i2v_480p": ("wan2.1", "i2v", "480p"),
    "wan21_flf2v_720p": ("wan2.1", "flf2v", "720p"),
    "wan21_vace_canny": ("wan2.1", "vace", "480p"),
    "wan21_fun_control": ("wan2.1", "fun-control", "480p"),
    "wan21_t2v_lora_stack": ("wan2.1", "t2v", "1.3b"),
    "wan22_a14b_t2v": ("wan2.2", "t2v", "720p"),
    "wan22_a14b_i2v": ("wan2.2", "i2v", "720p"),
    "wan22_ti2v_5b": ("wan2.2", "ti2v", "5b"),
    "wan21_t2v_long_context": ("wan2.1", "t2v", "1.3b"),
    "wan21_fun_camera_orbit": ("wan2.1", "fun-camera", "480p"),
    "wan21_t2v_14b_distill": ("wan2.1", "t2v", "14b"),
    "wan22_a14b_t2v_distill": ("wan2.2", "t2v", "720p"),
}
# Step-distilled (4 steps, CFG 1) workflows: their sampler settings are the LoRA releases', not the official ones.
DISTILLED = {
    # workflow: the (high-noise, low-noise) LoRAs of its stack; None = a single DiT
    "wan21_t2v_14b_distill": ("Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32.safetensors", None),
    "wan22_a14b_t2v_distill": (
        "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors",
        "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors",
    ),
}
LIGHTNING_SIGMAS = (1.0, 0.9375, 0.833333, 0.625, 0.0)  # linspace(1, 0, 5) shifted by 5
# Released outside the Comfy-Org repositories: the download URL the editor offers.
THIRD_PARTY_URLS = {
    "Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32.safetensors": "https://huggingface.co/Kijai/WanVideo_comfy"
    "/resolve/main/Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32.safetensors",
}
LONG_FRAMES = {"wan21_t2v_long_context": 241}  # longer than the trained length on purpose (context windows)
SMALL = {"width": 32, "height": 32, "length": 5, "steps": 2}  # 32: a multiple of 32 for TI2V's z48 VAE


@pytest.fixture
def placeholder_models(tmp_path, monkeypatch):
    """Empty files named like the released models, so the loader combos list them."""
    for entry in TINY_FILES:
        (tmp_path / entry.folder).mkdir(exist_ok=True)
        (tmp_path / entry.folder / entry.name).write_bytes(b"")
    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(tmp_path))
    monkeypatch.delenv("WAN_CORE_INPUT_DIR", raising=False)
    return tmp_path


def _nodes_of(workflow: dict, node_type: str) -> list[dict]:
    return [n for n in workflow["nodes"] if n["type"] == node_type]


def test_all_modes_are_shipped():
    assert set(NAMES) == set(EXPECTED)
    assert sorted(p.stem for p in API_DIR.glob("*.json")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_workflow_validates_against_node_definitions(name, placeholder_models):
    errors = validate_ui(load_json(WORKFLOWS / f"{name}.json"))
    assert errors == []


@pytest.mark.parametrize("name", NAMES)
def test_api_twin_is_in_sync(name, placeholder_models):
    assert ui_to_api(load_json(WORKFLOWS / f"{name}.json")) == load_json(API_DIR / f"{name}.json")


@pytest.mark.parametrize("name", NAMES)
def test_api_twin_titles_are_unique_and_meaningful(name):
    """API clients find nodes by _meta.title: one per node, never the class name, the UI node's own title."""
    import nodes

    api, ui = load_json(API_DIR / f"{name}.json"), load_json(WORKFLOWS / f"{name}.json")
    titles = [node["_meta"]["title"] for node in api.values()]
    assert len(titles) == len(set(titles)), f"duplicate titles: {sorted(titles)}"
    ui_titles = {str(n["id"]): n.get("title") for n in ui["nodes"]}
    for nid, node in api.items():
        title = node["_meta"]["title"]
        assert title == ui_titles[nid], (nid, title)  # what the editor shows and exports
        assert title != node["class_type"] and title != nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node["class_type"]), title


def test_committed_workflows_equal_the_build_script_output(placeholder_models):
    spec = importlib.util.spec_from_file_location("build_workflows", WORKFLOWS / "build_workflows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built = module.all_workflows()
    assert sorted(built) == NAMES
    for name, workflow in built.items():
        assert workflow == load_json(WORKFLOWS / f"{name}.json"), f"{name}: run workflows/build_workflows.py"


@pytest.mark.parametrize("name", [n for n in NAMES if n not in DISTILLED])
def test_sampler_settings_are_the_official_defaults(name, placeholder_models):
    api = load_json(API_DIR / f"{name}.json")
    (sampler,) = [n["inputs"] for n in api.values() if n["class_type"] == "WanCoreSampler"]
    d = defaults_for(*EXPECTED[name])
    cfg_low, cfg_high = d.cfg if isinstance(d.cfg, tuple) else (d.cfg, d.cfg)
    assert (sampler["steps"], sampler["shift"], sampler["cfg"], sampler["solver"]) == (
        d.steps,
        d.shift,
        cfg_high,
        d.solver,
    )
    if name.startswith("wan22_a14b"):
        assert sampler["cfg_low_noise"] == cfg_low
    (save,) = [n["inputs"] for n in api.values() if n["class_type"] == "WanCoreSaveVideo"]
    assert save["fps"] == d.fps
    sizes = [n["inputs"] for n in api.values() if "length" in n["inputs"] and "vae" in n["inputs"]]
    frames = LONG_FRAMES.get(name, d.frames)
    assert sizes and all((s["width"], s["height"], s["length"]) == (d.width, d.height, frames) for s in sizes)


@pytest.mark.parametrize("name", sorted(DISTILLED))
def test_distilled_workflows_sample_4_steps_without_cfg_on_the_lightning_sigmas(name, placeholder_models):
    from wan_core.sampling.schedules import parse_sigmas

    api = load_json(API_DIR / f"{name}.json")
    (sampler,) = [n["inputs"] for n in api.values() if n["class_type"] == "WanCoreSampler"]
    assert (sampler["steps"], sampler["cfg"], sampler["shift"], sampler["solver"]) == (4, 1.0, 5.0, "euler")
    source = api[sampler["sigmas"][0]]
    assert source["class_type"] == "WanCoreSigmas"
    assert parse_sigmas(source["inputs"]["sigmas"]) == LIGHTNING_SIGMAS
    stacks = [n["inputs"] for n in api.values() if n["class_type"] == "WanCoreLoraStack"]
    high, low = DISTILLED[name]
    if low is None:
        assert [(s["lora_name"], s["strength"]) for s in stacks] == [(high, 1.0)]
    else:  # each expert its own LoRA, the other one at strength 0
        assert [(s["lora_name"], s["strength"], s["strength_low_noise"]) for s in stacks] == [
            (high, 1.0, 0.0),
            (low, 0.0, 1.0),
        ]
        assert sampler["moe_boundary"] == 0.875 and sampler["cfg_low_noise"] == -1.0
    (apply,) = [n for n in api.values() if n["class_type"] == "WanCoreApplyLoraStack"]
    assert sampler["model"] == [next(k for k, v in api.items() if v is apply), 0]


@pytest.mark.parametrize("name", NAMES)
def test_notes_name_every_model_file_and_files_are_released_names(name):
    workflow = load_json(WORKFLOWS / f"{name}.json")
    (note,) = _nodes_of(workflow, "MarkdownNote")
    released = {e.name: e.folder for e in TINY_FILES}
    api = ui_to_api(workflow)
    used = [v for n in api.values() for k, v in n["inputs"].items() if k.endswith("_name") and v != "none"]
    assert used
    for file_name in used:
        assert file_name in released, f"{file_name} is not a released (TINY_FILES) name"
        assert f"models/{released[file_name]}/{file_name}" in note["widgets_values"][0]
    for node in _nodes_of(workflow, "LoadImage") + _nodes_of(workflow, "WanCoreLoadVideo"):
        assert (WORKFLOWS / "inputs" / node["widgets_values"][0]).is_file()


def test_seed_widget_carries_control_after_generate():
    workflow = load_json(WORKFLOWS / "wan21_t2v_1.3b.json")
    (sampler,) = _nodes_of(workflow, "WanCoreSampler")
    assert sampler["widgets_values"][:2] == [42, "fixed"]
    assert "control_after_generate" not in str(load_json(API_DIR / "wan21_t2v_1.3b.json"))


@pytest.mark.parametrize("name", NAMES)
def test_pack_and_model_download_hints(name):
    """Our nodes carry the registry id and version (pyproject) the editor names a missing pack by; every model
    file a workflow selects, but the placeholder example LoRA, is in the editor's models lists with a direct
    download URL into its ComfyUI folder (the Comfy-Org repackaged release)."""
    import tomllib

    project = tomllib.loads((WORKFLOWS.parent / "pyproject.toml").read_text())["project"]
    workflow = load_json(WORKFLOWS / f"{name}.json")
    folders = {e.name: e.folder for e in TINY_FILES}
    repos = {"wan2.1": "Wan_2.1_ComfyUI_repackaged", "wan2.2": "Wan_2.2_ComfyUI_Repackaged"}
    selected = set()
    for node in workflow["nodes"]:
        ours = node["type"].startswith("WanCore")
        assert (node["properties"].get("cnr_id"), node["properties"].get("ver")) == (
            (project["name"], project["version"]) if ours else (None, None)
        ), node["id"]
        files = [v for v in node["widgets_values"] if isinstance(v, str) and v in folders and "example" not in v]
        assert [m["name"] for m in node["properties"].get("models", [])] == files, node["id"]
        selected.update(files)
    assert selected and {m["name"] for m in workflow["models"]} == selected
    for m in workflow["models"]:
        assert m["directory"] == folders[m["name"]]
        repo = repos["wan2.2" if m["name"].startswith("wan2.2") else "wan2.1"]
        assert m["url"] == THIRD_PARTY_URLS.get(
            m["name"], f"https://huggingface.co/Comfy-Org/{repo}/resolve/main/split_files/{m['directory']}/{m['name']}"
        )
    assert schema_problems(workflow) == []


def test_load_video_nodes_carry_the_upload_button_value_last():
    """The editor serialises the upload button's value after every other widget (comfyui_frontend.py)."""
    found = 0
    for name in NAMES:
        for node in _nodes_of(load_json(WORKFLOWS / f"{name}.json"), "WanCoreLoadVideo"):
            assert node["widgets_values"] == ["control.mp4", 0, "image"], (name, node["widgets_values"])
            found += 1
    assert found == 2


def test_validator_catches_broken_workflows(placeholder_models):
    good = load_json(WORKFLOWS / "wan21_i2v_480p.json")
    assert validate_ui(good) == []
    swapped = copy.deepcopy(good)
    (sampler,) = _nodes_of(swapped, "WanCoreSampler")
    sampler["widgets_values"][2], sampler["widgets_values"][4] = "unipc", sampler["widgets_values"][2]
    assert any("is not a" in e for e in validate_ui(swapped))
    short = copy.deepcopy(good)
    _nodes_of(short, "WanCoreSampler")[0]["widgets_values"].pop(1)  # control_after_generate dropped
    assert validate_ui(short)
    out_of_range = copy.deepcopy(good)
    _nodes_of(out_of_range, "WanCoreImageToVideo")[0]["widgets_values"][0] = 8
    assert any("outside" in e for e in validate_ui(out_of_range))
    wrong_link = copy.deepcopy(good)
    wrong_link["links"][0][5] = "IMAGE"
    assert any("types differ" in e for e in validate_ui(wrong_link))
    unknown = copy.deepcopy(good)
    unknown["nodes"][1]["type"] = "NoSuchNode"
    assert any("unknown type" in e for e in validate_ui(unknown))


# --------------------------------------------------------------------------- end to end on tiny models


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from wan_core.tiny_build import write_tiny_models

    root = tmp_path_factory.mktemp("tiny_models")
    write_tiny_models(root)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_workflow_runs_end_to_end_on_tiny_models(name, tiny_models, tmp_path, monkeypatch):
    from wan_core.video_io import read_video

    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(tiny_models))
    monkeypatch.setenv("WAN_CORE_OUTPUT_DIR", str(tmp_path))
    monkeypatch.delenv("WAN_CORE_INPUT_DIR", raising=False)
    workflow = load_json(WORKFLOWS / f"{name}.json")
    assert validate_ui(workflow) == []
    api = override_api(load_json(API_DIR / f"{name}.json"), SMALL)
    outputs = execute_api(api, workflow=workflow)
    (saved,) = [o["ui"]["images"][0] for nid, o in outputs.items() if api[nid]["class_type"] == "WanCoreSaveVideo"]
    frames, fps = read_video(tmp_path / saved["subfolder"] / saved["filename"])
    assert frames.shape == (SMALL["length"], SMALL["height"], SMALL["width"], 3)
    assert fps == pytest.approx(defaults_for(*EXPECTED[name]).fps)
    assert frames.std() > 0  # not a constant image
    badges = [o["ui"]["text"][0] for o in outputs.values() if o["ui"] and "text" in o["ui"]]
    # the detected variant is shown; the A14B loaders name the expert pair (its T2V experts alone read as
    # Wan2.1 T2V-14B: identical keys)
    family, task = EXPECTED[name][:2]
    assert any(b.startswith(f"{family}-{task}") for b in badges), badges
    assert any(b.endswith("(high + low noise experts)") for b in badges) == name.startswith("wan22_a14b"), badges


def _run_modified(name, tiny_models, tmp_path, monkeypatch, change):
    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(tiny_models))
    monkeypatch.setenv("WAN_CORE_OUTPUT_DIR", str(tmp_path))
    api = override_api(load_json(API_DIR / f"{name}.json"), SMALL)
    for node in api.values():
        change(node)
    return execute_api(api)


@pytest.mark.parametrize(
    "name,change,message",
    [
        (
            "wan21_i2v_480p",
            lambda n: (
                n["inputs"].update(model_name="wan2.1_t2v_1.3B_bf16.safetensors")
                if "model_name" in n["inputs"]
                else None
            ),
            r"(?i)t2v|text-to-video|image",
        ),
        (
            "wan22_ti2v_5b",
            lambda n: n["inputs"].update(vae_name="wan_2.1_vae.safetensors") if "vae_name" in n["inputs"] else None,
            r"wan2\.2_vae|48|VAE",
        ),
        ("wan21_t2v_1.3b", lambda n: n["inputs"].update(width=40) if "width" in n["inputs"] else None, r"40"),
        (
            "wan22_a14b_t2v",
            lambda n: (
                n["inputs"].update(low_noise_model_name="wan2.2_ti2v_5B_fp16.safetensors")
                if "low_noise_model_name" in n["inputs"]
                else None
            ),
            r"experts do not match",
        ),
    ],
)
def test_bad_graphs_fail_with_a_wan_error_naming_the_fix(name, change, message, tiny_models, tmp_path, monkeypatch):
    from wan_core.errors import WanError

    with pytest.raises(WanError, match=message):
        _run_modified(name, tiny_models, tmp_path, monkeypatch, change)


@pytest.mark.parametrize("mode,inference", [("merge", False), ("runtime", False), ("merge", True)])
def test_lora_changes_the_result_but_never_the_loaded_model(mode, inference, tiny_models, tmp_path, monkeypatch):
    """Also inside torch.inference_mode, as ComfyUI runs nodes (models then load as inference tensors)."""
    import torch

    with torch.inference_mode(inference):
        _check_lora_run(mode, tiny_models, monkeypatch)


def _check_lora_run(mode, tiny_models, monkeypatch):
    import torch

    import nodes

    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(tiny_models))
    cls = nodes.NODE_CLASS_MAPPINGS
    model = cls["WanCoreModelLoader"]().load("wan2.1_t2v_1.3B_bf16.safetensors", "none", "fp32", "auto", 0)["result"][0]
    vae = cls["WanCoreVAELoader"]().load("wan_2.1_vae.safetensors", "fp32")["result"][0]
    te = cls["WanCoreTextEncoderLoader"]().load("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "cpu", "fp32", True)
    (embeds,) = cls["WanCoreTextEncode"]().encode(te["result"][0], "a fox", "")
    cond, _ = cls["WanCoreEmptyVideoLatent"]().build(vae, 32, 32, 5)
    (stack,) = cls["WanCoreLoraStack"]().stack("wan2.1_t2v_1.3B_example_lora.safetensors", 1.0, -1.0, mode, "")
    with_lora = cls["WanCoreApplyLoraStack"]().apply(model, stack)["result"][0]
    before = {k: v.clone() for k, v in model.high.state_dict().items()}
    sampler = cls["WanCoreSampler"]()
    args = dict(
        text_embeds=embeds,
        conditioning=cond,
        seed=1,
        steps=2,
        cfg=5.0,
        cfg_low_noise=-1.0,
        shift=5.0,
        solver="unipc",
        denoise=1.0,
        moe_boundary=0.0,
        batch_size=1,
    )
    plain = sampler.run(model=model, **args)["result"][0]["samples"]
    lora = sampler.run(model=with_lora, **args)["result"][0]["samples"]
    again = sampler.run(model=model, **args)["result"][0]["samples"]
    assert (lora - plain).abs().max() > 1e-4  # the LoRA did something
    assert torch.equal(plain, again)  # ... and left nothing behind
    after = model.high.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(getattr(m, "adapters", None) for m in model.high.modules())


def _extra_graph(kind: str):
    from workflow_tools import GraphBuilder, ui_to_api

    g = GraphBuilder()
    vae = g.add("WanCoreVAELoader", {"vae_name": "wan_2.1_vae.safetensors", "dtype": "fp32"})
    te = g.add("WanCoreTextEncoderLoader", {"text_encoder_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors"})
    img = g.add("LoadImage", {"image": "start.png"})
    end = g.add("LoadImage", {"image": "end.png"})
    size = {"width": 32, "height": 32, "length": 5}
    if kind == "fun_inp":
        m = g.add("WanCoreModelLoader", {"model_name": "wan2.1_fun_inp_1.3B_bf16.safetensors"})
        cv = g.add("WanCoreCLIPVisionLoader", {"clip_name": "clip_vision_h.safetensors"})
        ce = g.add("WanCoreCLIPVisionEncode", {}, {"clip_vision": (cv, 0), "image": (img, 0)})
        c = g.add(
            "WanCoreFunInpaintToVideo",
            size,
            {"vae": (vae, 0), "start_image": (img, 0), "end_image": (end, 0), "clip_embeds": (ce, 0)},
        )
        extra = {}
    elif kind == "vace_full":
        m = g.add("WanCoreModelLoader", {"model_name": "wan2.1_vace_1.3B_fp16.safetensors"})
        vid = g.add("WanCoreLoadVideo", {"video": "control.mp4", "max_frames": 5})
        fit = g.add("WanCoreFitFrames", {"width": 32, "height": 32}, {"frames": (vid, 0)})
        depth = g.add("WanCoreDepthPassthrough", {}, {"frames": (fit, 0)})
        pose = g.add("WanCorePosePassthrough", {}, {"frames": (fit, 0)})
        soft = g.add("WanCoreSoftEdges", {"method": "laplacian"}, {"frames": (pose, 0)})
        first = g.add(
            "WanCoreVaceToVideo",
            {**size, "strength": 0.7, "end_percent": 0.5},
            {"vae": (vae, 0), "control_video": (depth, 0), "control_masks": (img, 1)},
        )
        c = g.add(
            "WanCoreVaceToVideo",
            {**size, "strength": 0.5},
            {"vae": (vae, 0), "control_video": (soft, 0), "reference_image": (img, 0), "previous": (first, 0)},
        )
        extra = {}
    else:  # v2v: encode frames, resample from an init latent with denoise < 1
        m = g.add("WanCoreModelLoader", {"model_name": "wan2.1_t2v_1.3B_bf16.safetensors"})
        vid = g.add("WanCoreLoadVideo", {"video": "control.mp4", "max_frames": 5})
        fit = g.add("WanCoreFitFrames", {"width": 32, "height": 32}, {"frames": (vid, 0)})
        enc = g.add("WanCoreVAEEncode", {}, {"vae": (vae, 0), "frames": (fit, 0)})
        c = g.add("WanCoreEmptyVideoLatent", size, {"vae": (vae, 0)})
        extra = {"latent": (enc, 0)}
    t = g.add("WanCoreTextEncode", {"positive": "a test"}, {"text_encoder": (te, 0), "model": (m, 0)})
    s = g.add(
        "WanCoreSampler",
        {"steps": 2, "denoise": 0.5 if kind == "v2v" else 1.0},
        {"model": (m, 0), "text_embeds": (t, 0), "conditioning": (c, 0), **extra},
    )
    d = g.add("WanCoreVAEDecode", {}, {"vae": (vae, 0), "latent": (s, 0)})
    g.add("WanCoreSaveVideo", {"filename_prefix": kind}, {"frames": (d, 0)})
    workflow = g.build(kind)
    return workflow, ui_to_api(workflow)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fun_inp", "vace_full", "v2v"])
def test_more_node_combinations_run_on_tiny_models(kind, tiny_models, tmp_path, monkeypatch):
    from wan_core.video_io import read_video

    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(tiny_models))
    monkeypatch.setenv("WAN_CORE_OUTPUT_DIR", str(tmp_path))
    monkeypatch.delenv("WAN_CORE_INPUT_DIR", raising=False)
    workflow, api = _extra_graph(kind)
    assert validate_ui(workflow) == []
    outputs = execute_api(api, workflow=workflow)
    (saved,) = [o["ui"]["images"][0] for o in outputs.values() if o["ui"] and "images" in o["ui"]]
    frames, _ = read_video(tmp_path / saved["subfolder"] / saved["filename"])
    assert frames.shape == (5, 32, 32, 3)
