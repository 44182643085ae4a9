"""GGUF and INT8 from the two front doors: the Model Loader node (standalone bridge) and the CLI."""

import pytest
import torch
from quant_helpers import block_linear_types, write_gguf
from safetensors.torch import load_file

from nodes import comfy_bridge as bridge
from nodes.loaders import WEIGHT_DTYPES, WanModelLoader
from wan_core.cli import main
from wan_core.quant import weight_kinds
from wan_core.tiny_build import write_tiny_models
from wan_core.video_io import read_metadata

T2V = "wan2.1_t2v_1.3B_bf16.safetensors"
VAE, TE = "wan_2.1_vae.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
GGUF_NAME = "wan2.1_t2v_1.3B-Q4_K_M.gguf"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny models in ComfyUI's folders, plus the tiny T2V DiT converted to a GGUF (ComfyUI key names)."""
    # one folder per session, shared with test_pipeline.py / test_cli.py (same seed -> same files)
    files = write_tiny_models(tmp_path_factory.getbasetemp() / "wan_core_tiny", names=(T2V, VAE, TE), overwrite=False)
    sd = {k: v.float() for k, v in load_file(str(files[T2V])).items()}
    plain = {k.removeprefix("model.diffusion_model."): v for k, v in sd.items()}
    types = {"model.diffusion_model." + k: t for k, t in block_linear_types(plain, ("Q4_K", "Q6_K", "Q8_0")).items()}
    gguf_dir = tmp_path_factory.mktemp("gguf_models") / "diffusion_models"
    gguf_dir.mkdir()
    files[GGUF_NAME] = write_gguf(gguf_dir / GGUF_NAME, sd, types)
    return files


def test_model_loader_lists_and_loads_gguf_and_int8(models, monkeypatch):
    root = models[GGUF_NAME].parents[1]
    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(root))
    monkeypatch.setattr(bridge, "compute_device", lambda: torch.device("cpu"))
    assert GGUF_NAME in bridge.model_files("diffusion_models") and "int8" in WEIGHT_DTYPES
    out = WanModelLoader().load(GGUF_NAME, "none", "auto", "sdpa", 0)
    kinds = weight_kinds(out["result"][0].high)
    assert {"Q4_K", "Q6_K", "Q8_0"} <= set(kinds) and out["ui"]["text"] == ["wan2.1-t2v"]
    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(models[T2V].parents[1]))
    int8 = WanModelLoader().load(T2V, "none", "int8", "sdpa", 0)["result"][0].high
    assert weight_kinds(int8)["int8"] == 20 and int8.dtype == torch.float32


def _generate(models, model, tmp_path, *extra):
    out = tmp_path / "gen.mp4"
    args = ["-q", "generate", "--model", str(model), "--vae", str(models[VAE]), "--text-encoder", str(models[TE])]
    args += ["--prompt", "a fox", "--frames", "5", "--size", "32x32", "--steps", "2", "--seed", "1"]
    code = main([*args, "--device", "cpu", "--out", str(out), *extra])
    assert code == 0 and out.is_file()
    return read_metadata(out)


def test_cli_generates_with_a_gguf_dit_and_with_int8_weights(models, tmp_path):
    assert _generate(models, models[GGUF_NAME], tmp_path)["model"] == GGUF_NAME
    assert _generate(models, models[T2V], tmp_path, "--dtype", "int8")["model"] == T2V
