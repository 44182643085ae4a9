"""Runs ComfyUI's own camera code on inputs written by tests/test_camera_parity.py (a subprocess).

    $COMFYUI_PYTHON tests/comfy_camera_reference.py DIR

Reads DIR/inputs.safetensors and DIR/spec.json, runs ComfyUI's WanCamAdapter, CameraWanModel
(both camera layouts) and WanCameraEmbedding with the same weights and inputs, and writes
DIR/outputs.safetensors. Needs COMFYUI_PATH (a ComfyUI checkout) and ComfyUI's requirements.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _import_comfy():
    sys.path.insert(0, os.environ["COMFYUI_PATH"])
    sys.argv = [sys.argv[0], "--cpu"]
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.ldm.wan.model as wan_model
    import comfy.ops
    from comfy_extras import nodes_camera_trajectory as trajectory

    return wan_model, comfy.ops.disable_weight_init, trajectory


def _weights(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def main(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    wan_model, ops, trajectory = _import_comfy()
    spec = json.loads((folder / "spec.json").read_text())
    tensors = load_file(str(folder / "inputs.safetensors"))
    settings = {"operations": ops, "device": "cpu", "dtype": torch.float32}
    out = {}
    adapter = wan_model.WanCamAdapter(24, spec["dim"], (2, 2), (2, 2), operation_settings=settings)
    adapter.load_state_dict(_weights(tensors, "adapter."))
    with torch.no_grad():
        out["adapter"] = adapter(tensors["camera"])
    for name, model_spec in spec["models"].items():
        model = wan_model.CameraWanModel(**model_spec, device="cpu", dtype=torch.float32, operations=ops)
        model.load_state_dict(_weights(tensors, f"{name}."))
        x = torch.cat([tensors["x"], tensors[f"y.{name}"]], dim=1)
        clip = tensors.get(f"clip.{name}")
        with torch.no_grad():
            out[f"model.{name}"] = model(
                x, tensors["t"], tensors["context"], clip_fea=clip, camera_conditions=tensors["camera"]
            )
    shapes = {}
    for dim in spec["released_dims"]:
        meta = {"operations": ops, "device": "meta", "dtype": torch.float32}
        released = wan_model.WanCamAdapter(24, dim, (2, 2), (2, 2), operation_settings=meta)
        shapes[str(dim)] = {k: list(v.shape) for k, v in released.state_dict().items()}
    (folder / "adapter_shapes.json").write_text(json.dumps(shapes))
    for i, args in enumerate(spec["embeddings"]):
        out[f"embedding.{i}"] = trajectory.WanCameraEmbedding.execute(*args).args[0].float()
    save_file({k: v.contiguous() for k, v in out.items()}, str(folder / "outputs.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
