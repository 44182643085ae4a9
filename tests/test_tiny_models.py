"""make-tiny-models: every TINY_FILES entry is written in its layout and loads as the expected model."""

import pytest
import torch
from safetensors import safe_open

import wan_core
from wan_core.cli import main
from wan_core.tiny_build import DIT_PREFIX, storage_dtype, tiny_path
from wan_core.tiny_models import TINY, TINY_FILES

# What our DiT detector must report for each tiny builder kind. Fun-InP is architecturally
# Wan2.1 I2V and the Wan2.2 T2V experts are key-identical to Wan2.1 T2V (WAN_SPEC 1.2 / dit.config).
EXPECTED_DIT = {
    "wan2.1-t2v": ("wan2.1", "t2v"),
    "wan2.1-i2v": ("wan2.1", "i2v"),
    "wan2.1-flf2v": ("wan2.1", "flf2v"),
    "wan2.1-vace": ("wan2.1", "vace"),
    "wan2.1-fun-control": ("wan2.1", "fun-control"),
    "wan2.1-fun-inp": ("wan2.1", "i2v"),
    "wan2.2-t2v": ("wan2.1", "t2v"),
    "wan2.2-i2v": ("wan2.2", "i2v"),
    "wan2.2-ti2v": ("wan2.2", "ti2v"),
    "wan2.1-fun-camera": ("wan2.1", "fun-camera"),  # control_adapter + img_emb
    "wan2.2-fun-camera": ("wan2.2", "fun-camera"),  # control_adapter, no img_emb
}
DIT_FILES = [e for e in TINY_FILES if e.kind in EXPECTED_DIT]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_models")
    assert main(["-q", "make-tiny-models", str(folder)]) == 0
    return folder


def _keys_and_dtypes(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_slice(k).get_dtype() for k in f.keys()}


def test_every_tiny_file_is_written_under_its_comfyui_folder(tiny_dir):
    for entry in TINY_FILES:
        path = tiny_dir / entry.folder / entry.name
        assert path.is_file() and path.stat().st_size > 0, path
        assert tiny_path(tiny_dir, entry.name) == path


@pytest.mark.parametrize("entry", DIT_FILES, ids=lambda e: e.name)
def test_dit_files_load_as_their_variant(tiny_dir, entry):
    path = tiny_dir / entry.folder / entry.name
    keys = _keys_and_dtypes(path)
    model_keys = [k for k in keys if k != "scaled_fp8"]
    assert all(k.startswith(DIT_PREFIX) for k in model_keys), "ComfyUI DiT files carry model.diffusion_model."
    if entry.layout == "fp8_scaled":
        assert "scaled_fp8" in keys
        assert any(d == "F8_E4M3" for d in keys.values())
        assert any(k.endswith(".scale_weight") for k in keys)
    else:
        want = {torch.bfloat16: "BF16", torch.float16: "F16"}[storage_dtype(entry.name)]
        assert keys[DIT_PREFIX + "patch_embedding.weight"] == want
    dit = wan_core.load_dit(str(path), device="cpu", dtype=torch.float32)
    assert (dit.config.family, dit.config.task) == EXPECTED_DIT[entry.kind], dit.config.variant
    assert dit.config.dim == TINY.dit_dim and dit.config.text_dim == TINY.text_dim


def test_a14b_experts_are_different_weights(tiny_dir):
    def first_linear(name):
        with safe_open(str(tiny_path(tiny_dir, name)), "pt") as f:
            return f.get_tensor(DIT_PREFIX + "blocks.0.self_attn.q.weight").float()

    high = first_linear("wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors")
    low = first_linear("wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors")
    assert high.shape == low.shape and not torch.equal(high, low)


@pytest.mark.parametrize(
    "name,version,z_dim", [("wan_2.1_vae.safetensors", "2.1", 16), ("wan2.2_vae.safetensors", "2.2", 48)]
)
def test_vae_files_load_as_their_version(tiny_dir, name, version, z_dim):
    vae = wan_core.load_vae(str(tiny_path(tiny_dir, name)))
    assert str(vae.config.version) == version and vae.config.z_dim == z_dim


def test_text_encoder_file_is_fp8_scaled_with_embedded_tokenizer(tiny_dir):
    path = tiny_path(tiny_dir, "umt5_xxl_fp8_e4m3fn_scaled.safetensors")
    assert "scaled_fp8" in _keys_and_dtypes(path)
    te = wan_core.load_text_encoder(str(path), device="cpu", dtype=torch.float32, cache_dir=False)
    (emb,) = te.encode(["a tiny test prompt"])
    assert emb.ndim == 2 and emb.shape[1] == TINY.text_dim and torch.isfinite(emb).all()


def test_clip_vision_file_loads(tiny_dir):
    clip = wan_core.load_clip_vision(str(tiny_path(tiny_dir, "clip_vision_h.safetensors")))
    tokens = clip.encode(torch.rand(1, 64, 80, 3))
    assert tokens.shape[0] == 1 and tokens.shape[-1] == TINY.clip_width


def test_lora_file_matches_the_t2v_model(tiny_dir):
    from wan_core.lora import LoraSpec, apply_lora_stack

    dit = wan_core.load_dit(
        str(tiny_path(tiny_dir, "wan2.1_t2v_1.3B_bf16.safetensors")), device="cpu", dtype=torch.float32
    )
    before = {k: v.clone() for k, v in dit.state_dict().items() if k.endswith("self_attn.q.weight")}
    lora = tiny_path(tiny_dir, "wan2.1_t2v_1.3B_example_lora.safetensors")
    keys = _keys_and_dtypes(lora)
    assert all(k.startswith("diffusion_model.blocks.") for k in keys)
    assert {k.rsplit(".", 2)[-2] if k.endswith(".weight") else "alpha" for k in keys} == {
        "lora_down",
        "lora_up",
        "alpha",
    }
    apply_lora_stack(dit, [LoraSpec(path=str(lora), strength=1.0)])
    after = dit.state_dict()
    assert before and all(not torch.equal(before[k], after[k]) for k in before)


def test_unknown_name_is_a_clear_error(tmp_path):
    assert main(["-q", "make-tiny-models", str(tmp_path), "--only", "nope.safetensors"]) == 1
