"""Long-video and camera nodes through graphs on tiny models: the shipped long-context workflow with
real windows, Wan Extend Video chained after a clip, and the camera nodes' outputs."""

from __future__ import annotations

import pytest
import torch
from workflow_tools import (
    API_DIR,
    WORKFLOWS,
    GraphBuilder,
    execute_api,
    load_json,
    override_api,
    ui_to_api,
    validate_ui,
)

from wan_core.sampling import windows
from wan_core.tiny_build import write_tiny_models
from wan_core.video_io import read_video

NEEDED = (
    "wan2.1_t2v_1.3B_bf16.safetensors",
    "wan2.1_vace_1.3B_fp16.safetensors",
    "wan2.1_i2v_480p_14B_bf16.safetensors",
    "wan2.1_fun_camera_v1.1_1.3B_bf16.safetensors",
    "wan_2.1_vae.safetensors",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "clip_vision_h.safetensors",
)


@pytest.fixture
def models(tmp_path_factory, tmp_path, monkeypatch):
    root = tmp_path_factory.getbasetemp() / "wan_core_tiny"  # shared with test_pipeline: real files only
    write_tiny_models(root, names=NEEDED, overwrite=False)
    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(root))
    monkeypatch.setenv("WAN_CORE_OUTPUT_DIR", str(tmp_path))
    monkeypatch.delenv("WAN_CORE_INPUT_DIR", raising=False)
    return tmp_path


def _saved_video(outputs: dict, api: dict, out_dir) -> torch.Tensor:
    (saved,) = [o["ui"]["images"][0] for nid, o in outputs.items() if api[nid]["class_type"] == "WanCoreSaveVideo"]
    return read_video(out_dir / saved["subfolder"] / saved["filename"])[0]


@pytest.mark.slow
def test_long_context_workflow_samples_in_windows(models, monkeypatch):
    plans = []
    real_plan = windows.plan_windows

    def recording_plan(*args, **kwargs):
        plan = real_plan(*args, **kwargs)
        plans.append(len(plan))
        return plan

    monkeypatch.setattr(windows, "plan_windows", recording_plan)
    name = "wan21_t2v_long_context"
    workflow = load_json(WORKFLOWS / f"{name}.json")
    sizes = {"length": 41, "width": 16, "height": 16, "steps": 2, "context_length": 4, "context_overlap": 1}
    api = override_api(load_json(API_DIR / f"{name}.json"), sizes)
    frames = _saved_video(execute_api(api, workflow=workflow), api, models)
    assert frames.shape == (41, 16, 16, 3)
    assert plans and min(plans) > 1  # 11 latent frames in windows of 4


def _extend_graph(model: str, clip: bool, chained: bool):
    g = GraphBuilder()
    m = g.add("WanCoreModelLoader", {"model_name": model})
    vae = g.add("WanCoreVAELoader", {"vae_name": "wan_2.1_vae.safetensors", "dtype": "fp32"})
    te = g.add("WanCoreTextEncoderLoader", {"text_encoder_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors"})
    t = g.add("WanCoreTextEncode", {"positive": "the walk goes on"}, {"text_encoder": (te, 0), "model": (m, 0)})
    vid = g.add("WanCoreLoadVideo", {"video": "control.mp4", "max_frames": 9})
    fit = g.add("WanCoreFitFrames", {"width": 32, "height": 32}, {"frames": (vid, 0)})
    extra = {}
    if clip:
        extra["clip_vision"] = (g.add("WanCoreCLIPVisionLoader", {"clip_name": "clip_vision_h.safetensors"}), 0)
    first = g.add(
        "WanCoreExtendVideo",
        {"overlap_frames": 5, "length": 9, "steps": 2},
        {"model": (m, 0), "text_embeds": (t, 0), "vae": (vae, 0), "video": (fit, 0), **extra},
    )
    last = first
    if chained:  # extend the joined video once more
        last = g.add(
            "WanCoreExtendVideo",
            {"overlap_frames": 5, "length": 9, "steps": 2, "seed": 7},
            {"model": (m, 0), "text_embeds": (t, 0), "vae": (vae, 0), "video": (first, 0), **extra},
        )
    g.add("WanCoreSaveVideo", {"filename_prefix": "extended"}, {"frames": (last, 0)})
    workflow = g.build("extend")
    return workflow, ui_to_api(workflow), fit, first


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,clip,chained",
    [("wan2.1_vace_1.3B_fp16.safetensors", False, True), ("wan2.1_i2v_480p_14B_bf16.safetensors", True, False)],
)
def test_extend_video_node_joins_and_chains(models, model, clip, chained):
    workflow, api, fit, first = _extend_graph(model, clip, chained)
    assert validate_ui(workflow) == []
    outputs = execute_api(api, workflow=workflow)
    source = outputs[str(fit)]["result"][0]
    joined, new = outputs[str(first)]["result"]
    assert joined.shape[0] == 9 + 9 - 5 and new.shape[0] == 9 - 5
    assert torch.equal(joined[:9], source)  # the previous clip is kept as it was
    total = 13 + (9 - 5 if chained else 0)
    assert _saved_video(outputs, api, models).shape == (total, 32, 32, 3)


def test_camera_nodes_give_trajectory_conditioning_and_preview(models):
    g = GraphBuilder()
    vae = g.add("WanCoreVAELoader", {"vae_name": "wan_2.1_vae.safetensors", "dtype": "fp32"})
    m = g.add("WanCoreModelLoader", {"model_name": "wan2.1_fun_camera_v1.1_1.3B_bf16.safetensors"})
    cam = g.add("WanCoreCameraTrajectory", {"preset": "zoom_in", "speed": 0.5, "length": 9})
    pv = g.add("WanCoreCameraPreview", {"width": 256, "height": 128}, {"camera": (cam, 0)})
    c = g.add(
        "WanCoreFunCameraToVideo",
        {"width": 32, "height": 32, "length": 9},
        {"vae": (vae, 0), "camera": (cam, 0), "model": (m, 0)},
    )
    workflow = g.build("camera")
    assert validate_ui(workflow) == []
    outputs = execute_api(ui_to_api(workflow), workflow=workflow)
    trajectory = outputs[str(cam)]["result"][0]
    assert trajectory.frames == 9 and float(trajectory.c2w[-1, 2, 3]) > 0  # zoom in: forward
    assert outputs[str(pv)]["result"][0].shape == (1, 128, 256, 3)
    cond = outputs[str(c)]["result"][0]
    assert cond.camera.shape == (1, 24, 3, 32, 32) and cond.y.shape == (1, 16, 3, 4, 4)


def test_camera_trajectory_node_reads_pose_files_from_the_input_folder(tmp_path, monkeypatch):
    from nodes.camera import WanCameraTrajectory

    monkeypatch.setenv("WAN_CORE_INPUT_DIR", str(tmp_path))
    (tmp_path / "move.txt").write_text(
        "https://example.com/clip\n" + "0 0.5 0.9 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0\n" * 5
    )
    choices = WanCameraTrajectory.INPUT_TYPES()["required"]["pose_file"][0]
    assert choices == ["none", "move.txt"]
    (camera,) = WanCameraTrajectory().build("static", 1.0, 9, "move.txt")
    assert camera.frames == 9  # 5 poses stretched to the 9 frames asked for
    assert WanCameraTrajectory.IS_CHANGED("static", 1.0, 9, "move.txt") != ""
    (preset,) = WanCameraTrajectory().build("pan_right", 2.0, 9, "none")
    assert preset.frames == 9 and float(preset.c2w[-1, 0, 3]) > 0


def test_context_windows_node_reports_an_overlap_as_long_as_the_window():
    from nodes.longvideo import WanContextWindows
    from wan_core.errors import InputError

    node = WanContextWindows()
    args = {"schedule": "uniform", "blend": "linear", "positions": "real", "image": "first", "freenoise": False}
    (options,) = node.build(context_length=21, context_overlap=20, **args)
    assert options.overlap == 20
    with pytest.raises(InputError, match=r"context overlap must lie in \[0, length\) = \[0, 21\), got 21"):
        node.build(context_length=21, context_overlap=21, **args)
