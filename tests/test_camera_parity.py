"""Fun-Camera parity with ComfyUI's own code, fed the same weights and inputs.

ComfyUI's WanCamAdapter, CameraWanModel (Wan2.1 layout with img_emb, Wan2.2 layout without) and
WanCameraEmbedding run in a subprocess under $COMFYUI_PYTHON (tests/comfy_camera_reference.py);
our camera adapter, DiT (loaded through wan_core.load_dit) and Plücker embedding must match them.
Skips with a printed reason when COMFYUI_PATH is unset.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import rel_err
from safetensors.torch import load_file, save_file

import wan_core
from wan_core.conditioning.camera import camera_embedding, preset_trajectory
from wan_core.dit.config import config_from_shapes, released_config
from wan_core.dit.model import WanDiT
from wan_core.dit.tiny import _random_like, tiny_dit_config, tiny_dit_state_dict

HERE = Path(__file__).resolve().parent
RELEASED_CAMERA = ("wan2.1-fun-camera-1.3b", "wan2.1-fun-camera-14b", "wan2.2-fun-camera-a14b")
COMFY_PRESETS = {  # ComfyUI's WanCameraEmbedding names -> ours
    "Static": "static",
    "Pan Up": "pan_up",
    "Pan Down": "pan_down",
    "Pan Left": "pan_left",
    "Pan Right": "pan_right",
    "Zoom In": "zoom_in",
    "Zoom Out": "zoom_out",
    "Anti Clockwise (ACW)": "roll_anticlockwise",
    "ClockWise (CW)": "roll_clockwise",
}


def _comfy() -> tuple[str, str]:
    path = os.environ.get("COMFYUI_PATH")
    if not path or not (Path(path) / "comfy" / "ldm" / "wan" / "model.py").is_file():
        reason = f"COMFYUI_PATH is not set to a ComfyUI checkout (got {path!r}): no ComfyUI camera reference"
        print(f"SKIP camera parity: {reason}")
        pytest.skip(reason)
    return path, os.environ.get("COMFYUI_PYTHON") or sys.executable


def _wan21_camera_with_clip_h() -> dict[str, torch.Tensor]:
    """A tiny Wan2.1 camera DiT whose img_emb takes 1280-wide CLIP-H tokens (ComfyUI's MLPProj is fixed at 1280)."""
    config = dataclasses.replace(tiny_dit_config("wan2.1-fun-camera"), clip_dim=1280, clip_tokens=257)
    gen = torch.Generator().manual_seed(5)
    shapes = {k: tuple(v.shape) for k, v in WanDiT(config, device="meta").state_dict().items()}
    return {name: _random_like(name, shape, gen) for name, shape in shapes.items()}


def _comfy_model_spec(config, model_type: str) -> dict:
    return {
        "model_type": model_type,
        "in_dim": config.in_dim,
        "dim": config.dim,
        "ffn_dim": config.ffn_dim,
        "freq_dim": config.freq_dim,
        "text_dim": config.text_dim,
        "out_dim": config.out_dim,
        "num_heads": config.num_heads,
        "num_layers": config.num_layers,
        "eps": config.eps,
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path, python = _comfy()
    folder = tmp_path_factory.mktemp("camera_parity")
    gen = torch.Generator().manual_seed(0)
    weights = {"wan21": _wan21_camera_with_clip_h(), "wan22": tiny_dit_state_dict("wan2.2-fun-camera", seed=3)}
    tensors = {f"adapter.{k[16:]}": v for k, v in weights["wan22"].items() if k.startswith("control_adapter.")}
    for name, sd in weights.items():
        tensors.update({f"{name}.{k}": v for k, v in sd.items()})
    tensors["x"] = torch.randn(1, 16, 3, 4, 6, generator=gen)
    tensors["y.wan21"] = torch.randn(1, 16, 3, 4, 6, generator=gen)
    tensors["y.wan22"] = torch.randn(1, 20, 3, 4, 6, generator=gen)
    tensors["clip.wan21"] = torch.randn(1, 257, 1280, generator=gen)
    tensors["t"] = torch.tensor([640.0])
    tensors["context"] = torch.cat([torch.randn(1, 9, 64, generator=gen), torch.zeros(1, 503, 64)], dim=1)
    tensors["camera"] = torch.randn(1, 24, 3, 32, 48, generator=gen)
    configs = {name: config_from_shapes({k: tuple(v.shape) for k, v in sd.items()}) for name, sd in weights.items()}
    spec = {
        "dim": configs["wan22"].dim,
        "models": {
            "wan21": _comfy_model_spec(configs["wan21"], "camera"),
            "wan22": _comfy_model_spec(configs["wan22"], "camera_2.2"),
        },
        "embeddings": [[name, 64, 32, 9, 0.7, 0.5, 0.5, 0.5, 0.5] for name in COMFY_PRESETS]
        + [["Pan Left", 32, 48, 13, 1.3, 0.4, 0.6, 0.45, 0.55]],
        "released_dims": sorted({released_config(v).dim for v in RELEASED_CAMERA}),
    }
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, str(folder / "inputs.safetensors"))
    (folder / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, COMFYUI_PATH=path)
    run = subprocess.run(
        [python, str(HERE / "comfy_camera_reference.py"), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = load_file(str(folder / "outputs.safetensors"))
    shapes = json.loads((folder / "adapter_shapes.json").read_text())
    return {"inputs": tensors, "weights": weights, "spec": spec, "out": out, "adapter_shapes": shapes}


def test_camera_adapter_matches_comfyui(reference):
    dit = wan_core.load_dit(reference["weights"]["wan22"], device="cpu", dtype="fp32")
    ours = dit.control_adapter(reference["inputs"]["camera"])
    assert rel_err(ours, reference["out"]["adapter"]) < 1e-5


@pytest.mark.parametrize("name", ["wan21", "wan22"])
def test_camera_dit_matches_comfyui(reference, name):
    inputs = reference["inputs"]
    dit = wan_core.load_dit(reference["weights"][name], device="cpu", dtype="fp32")
    clip = inputs.get(f"clip.{name}")
    ours = dit(
        inputs["x"], inputs["t"], inputs["context"], clip_fea=clip, y=inputs[f"y.{name}"], camera=inputs["camera"]
    )
    assert rel_err(ours, reference["out"][f"model.{name}"]) < 1e-4
    plain = dit(inputs["x"], inputs["t"], inputs["context"], clip_fea=clip, y=inputs[f"y.{name}"])
    assert rel_err(plain, reference["out"][f"model.{name}"]) > 1e-3  # the camera really changes the output


def test_plucker_embedding_matches_comfyui_presets(reference):
    for i, (preset, width, height, length, speed, fx, fy, cx, cy) in enumerate(reference["spec"]["embeddings"]):
        ours = camera_embedding(
            preset_trajectory(COMFY_PRESETS[preset], length, speed, (fx, fy, cx, cy), 1280 / 720), length, width, height
        )
        theirs = reference["out"][f"embedding.{i}"]
        assert ours.shape == theirs.shape, preset
        assert torch.allclose(ours, theirs, atol=2e-5, rtol=1e-4), (preset, float((ours - theirs).abs().max()))


@pytest.mark.parametrize("variant", RELEASED_CAMERA)
def test_adapter_shapes_equal_comfyuis_for_released_models(reference, variant):
    """ComfyUI builds a released checkpoint's adapter from its width (24 Plücker channels, unshuffle 8)."""
    config = released_config(variant)
    ours = {
        k[len("control_adapter.") :]: list(v.shape)
        for k, v in WanDiT(config, device="meta").state_dict().items()
        if k.startswith("control_adapter.")
    }
    assert ours == reference["adapter_shapes"][str(config.dim)]
