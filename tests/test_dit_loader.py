"""DiT loading: folders, shards, .pth, fp8 storage, dtype policy, detection and error messages."""

from __future__ import annotations

import pytest
import torch
from conftest import rel_err
from safetensors.torch import save_file
from test_dit_helpers import (
    cached_reference_output,
    cached_tiny,
    diffusers_reference,
    make_inputs,
    run_reference,
    write_hf_folder,
)

import wan_core
from wan_core.dit.config import RELEASED, config_from_shapes, released_config
from wan_core.dit.convert import diffusers_to_official_name, official_to_diffusers
from wan_core.dit.model import WanDiT
from wan_core.dit.tiny import tiny_dit_config, tiny_dit_state_dict
from wan_core.errors import BackendUnavailableError, CheckpointError, UnsupportedModelError, WanError
from wan_core.tiny_models import TinySizes

# Spec 1.2: parameter / tensor counts of the official classes (independent of our code).
SPEC_COUNTS = {
    "wan2.1-t2v-1.3b": (1_418_996_800, 825),
    "wan2.1-t2v-14b": (14_288_491_584, 1095),
    "wan2.1-i2v-14b": (16_394_878_784, 1303),
    "wan2.1-vace-1.3b": (2_153_972_032, 1264),
    "wan2.1-vace-14b": (17_337_592_896, 1331),
    "wan2.2-i2v-a14b": (14_288_901_184, None),
    "wan2.2-ti2v-5b": (4_999_787_712, 825),
}


@pytest.mark.parametrize("variant", sorted(RELEASED))
def test_released_shapes_are_detected(variant):
    """Detection from names/shapes alone (meta tensors: no data) gives the released config."""
    model = WanDiT(released_config(variant), device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    detected = config_from_shapes(shapes)
    assert detected == released_config(variant) and detected.variant == variant
    if variant in SPEC_COUNTS:
        params, tensors = SPEC_COUNTS[variant]
        assert sum(v.numel() for v in model.state_dict().values()) == params
        assert tensors is None or len(shapes) == tensors


def test_detected_fields_of_tiny_variants():
    cfg = config_from_shapes({k: tuple(v.shape) for k, v in cached_tiny("wan2.1-flf2v").items()})
    assert (cfg.task, cfg.family, cfg.clip_dim, cfg.clip_tokens, cfg.in_dim, cfg.out_dim) == (
        "flf2v",
        "wan2.1",
        64,
        34,
        36,
        16,
    )
    assert (cfg.dim, cfg.num_heads, cfg.num_layers, cfg.ffn_dim, cfg.text_dim, cfg.freq_dim) == (
        256,
        2,
        2,
        512,
        64,
        256,
    )
    assert cfg.extra_channels == 20 and cfg.latent_channels == 16
    cfg = config_from_shapes({k: tuple(v.shape) for k, v in cached_tiny("wan2.1-vace").items()})
    assert cfg.vace_layers == (0, 1) and cfg.vace_in_dim == 96 and cfg.variant == "wan2.1-vace"
    cfg = config_from_shapes({k: tuple(v.shape) for k, v in cached_tiny("wan2.2-ti2v").items()})
    assert cfg.per_token_timesteps and cfg.variant == "wan2.2-ti2v" and cfg.extra_channels == 0
    cfg = config_from_shapes({k: tuple(v.shape) for k, v in cached_tiny("wan2.2-i2v").items()})
    assert cfg.variant == "wan2.2-i2v" and cfg.clip_dim is None and cfg.extra_channels == 20


def test_hf_folder_with_config_vace_layers_and_shard_list(tmp_path):
    """Sharded HF folder; config.json's vace_layers wins over the even spacing (0, 2)."""
    sizes = TinySizes(dit_layers=4, vace_layers=(0, 3))
    sd = tiny_dit_state_dict("wan2.1-vace", sizes=sizes)
    config = tiny_dit_config("wan2.1-vace", sizes)
    paths = write_hf_folder(tmp_path / "with_cfg", sd, {"_class_name": "WanModel", "vace_layers": [0, 3]})
    model = wan_core.load_dit(tmp_path / "with_cfg", device="cpu")
    assert model.config.vace_layers == (0, 3) and model.config == config
    inputs = make_inputs(config)
    assert rel_err(model(**inputs), run_reference(diffusers_reference(config, sd), config, inputs)) <= 1e-4
    from_list = wan_core.load_dit(paths, device="cpu")  # no config.json: spacing num_layers // count
    assert from_list.config.vace_layers == (0, 2)


def test_diffusers_folder_and_pth(tmp_path):
    sd = cached_tiny("wan2.1-i2v")
    write_hf_folder(tmp_path / "diffusers", official_to_diffusers(sd), {"_class_name": "WanTransformer3DModel"})
    torch.save({"model.diffusion_model." + k: v for k, v in sd.items()}, tmp_path / "model.pth")
    want = cached_reference_output("wan2.1-i2v", False)
    for source in (tmp_path / "diffusers", tmp_path / "model.pth", sd):
        model = wan_core.load_dit(source, device="cpu")
        assert model.config.variant == "wan2.1-i2v"
        assert rel_err(model(**make_inputs(model.config)), want) <= 1e-4


def test_all_in_one_file_keeps_only_the_dit():
    """A ComfyUI checkpoint that also carries a VAE / text encoder: only model.diffusion_model.* is loaded."""
    sd = {"model.diffusion_model." + k: v for k, v in cached_tiny("wan2.1-t2v").items()}
    sd["first_stage_model.decoder.conv_in.weight"] = torch.zeros(3)
    sd["text_encoders.umt5.shared.weight"] = torch.zeros(4, 2)
    model = wan_core.load_dit(sd, device="cpu")
    assert rel_err(model(**make_inputs(model.config)), cached_reference_output("wan2.1-t2v", False)) <= 1e-4


def test_fp8_weights_stay_fp8(tmp_path):
    """Scaled fp8 keeps fp8 storage + scale; plain e5m2 weights (no scale) load too."""
    from test_dit_helpers import write_layout

    path, _ = write_layout(tmp_path, "wan2.1-t2v", "fp8_scaled")
    model = wan_core.load_dit(path, device="cpu")
    q = model.blocks[0].self_attn.q
    assert (
        q.weight.dtype == torch.float8_e4m3fn and q.scale_weight is not None and q.scale_weight.dtype == torch.float32
    )
    assert model.blocks[0].modulation.dtype == torch.float32
    sd = cached_tiny("wan2.1-t2v")
    plain = {k: (v.to(torch.float8_e5m2) if k.startswith("blocks.") and v.ndim == 2 else v) for k, v in sd.items()}
    save_file(plain, str(tmp_path / "plain_fp8.safetensors"))
    model = wan_core.load_dit(tmp_path / "plain_fp8.safetensors", device="cpu")
    assert model.blocks[1].ffn[0].weight.dtype == torch.float8_e5m2
    ref_weights = {k: v.float() for k, v in plain.items()}
    config = model.config
    inputs = make_inputs(config)
    assert rel_err(model(**inputs), run_reference(diffusers_reference(config, ref_weights), config, inputs)) <= 1e-4


def test_dtype_policy(tmp_path):
    sd = {k: v.to(torch.bfloat16) for k, v in cached_tiny("wan2.1-t2v").items()}
    save_file(sd, str(tmp_path / "bf16.safetensors"))
    kept = wan_core.load_dit(tmp_path / "bf16.safetensors", device="cpu")
    assert kept.blocks[0].ffn[0].weight.dtype == torch.bfloat16 and kept.dtype == torch.float32
    assert kept.blocks[0].self_attn.norm_q.weight.dtype == torch.float32
    half = wan_core.load_dit(tmp_path / "bf16.safetensors", device="cpu", dtype="bf16")
    assert half.dtype == torch.bfloat16
    stored_fp8 = wan_core.load_dit(cached_tiny("wan2.1-t2v"), device="cpu", dtype=torch.float8_e4m3fn)
    assert stored_fp8.blocks[0].self_attn.o.weight.dtype == torch.float8_e4m3fn and stored_fp8.dtype == torch.float32
    inputs = make_inputs(kept.config)
    out_kept, out_half = kept(**inputs), half(**inputs)
    assert out_half.dtype == torch.float32 and rel_err(out_half, out_kept) < 5e-2
    assert rel_err(stored_fp8(**inputs), out_kept) < 0.2


def test_foreign_and_broken_dicts_raise_helpful_errors():
    vae = {"decoder.middle.0.residual.0.gamma": torch.zeros(4, 1, 1, 1), "encoder.conv1.weight": torch.zeros(4, 3, 3)}
    with pytest.raises(UnsupportedModelError, match="VAE"):
        wan_core.load_dit(vae, device="cpu")
    t5 = {"encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(4, 4), "shared.weight": torch.zeros(8, 4)}
    with pytest.raises(WanError, match="umT5"):
        wan_core.load_dit(t5, device="cpu")
    sd = dict(cached_tiny("wan2.1-t2v"))
    del sd["blocks.1.ffn.0.weight"]
    sd["blocks.0.mystery.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"missing 1 tensors \(blocks\.1\.ffn\.0\.weight\).*mystery"):
        wan_core.load_dit(sd, device="cpu")
    odd = dict(cached_tiny("wan2.1-t2v"))
    odd["patch_embedding.weight"] = torch.zeros(256, 20, 1, 2, 2)
    with pytest.raises(UnsupportedModelError, match="in_dim 20"):
        wan_core.load_dit(odd, device="cpu")
    stray = dict(cached_tiny("wan2.1-t2v"), **{"patch_embedding.scale_weight": torch.tensor(2.0)})
    with pytest.raises(CheckpointError, match="not Linear weights"):
        wan_core.load_dit(stray, device="cpu")
    camera = dict(cached_tiny("wan2.1-i2v"), **{"control_adapter.conv.weight": torch.zeros(1)})
    with pytest.raises(UnsupportedModelError, match="camera adapter"):
        wan_core.load_dit(camera, device="cpu")


def test_attention_backends():
    with pytest.raises(BackendUnavailableError, match="flash-attn"):
        wan_core.load_dit(cached_tiny("wan2.1-t2v"), device="cpu", attention="flash_attn")
    with pytest.raises(BackendUnavailableError, match="pip install sageattention"):
        wan_core.load_dit(cached_tiny("wan2.1-t2v"), device="cpu", attention="sageattention")
    model = wan_core.load_dit(cached_tiny("wan2.1-t2v"), device="cpu", attention="sdpa")
    assert model.blocks[0].self_attn.backend == "sdpa"


def test_block_swap_keeps_output(tmp_path):
    """Swapped blocks (fp8 weights + scales) give the same output; the hooks really run."""
    from test_dit_helpers import write_layout

    path, _ = write_layout(tmp_path, "wan2.1-t2v", "fp8_scaled")
    model = wan_core.load_dit(path, device="cpu")
    inputs = make_inputs(model.config)
    before = model(**inputs)
    model.set_block_swap(1, "cpu")
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda m, a: seen.append(m.self_attn.q.weight.dtype))
    assert rel_err(model(**inputs), before) == 0.0 and seen == [torch.float8_e4m3fn]
    assert model.blocks[0].self_attn.q.scale_weight is not None
    model.set_block_swap(0)
    assert rel_err(model(**inputs), before) == 0.0
    model.set_block_swap(1, "cpu")  # moving the model leaves swapped blocks on the offload device
    model.to("meta")
    assert model.blocks[0].ffn[0].weight.device.type == "cpu" and model.blocks[1].ffn[0].weight.is_meta
    assert [name for name, _ in model.blocks.named_children()] == ["0", "1"]


def test_ref_conv_reference_latent():
    sd = dict(cached_tiny("wan2.1-i2v"))
    sd["ref_conv.weight"] = torch.randn(256, 16, 2, 2) * 0.1
    sd["ref_conv.bias"] = torch.zeros(256)
    model = wan_core.load_dit(sd, device="cpu")
    assert model.config.has_ref_conv and model.config.ref_conv_in_dim == 16
    inputs = make_inputs(model.config)
    plain = model(**inputs)
    with_ref = model(**inputs, ref_latent=torch.randn(1, 16, 4, 6))
    assert with_ref.shape == plain.shape and rel_err(with_ref, plain) > 1e-3


def test_diffusers_name_map_for_loras():
    assert (
        diffusers_to_official_name("blocks.3.attn2.add_k_proj.lora_A.weight")
        == "blocks.3.cross_attn.k_img.lora_A.weight"
    )
    assert diffusers_to_official_name("blocks.0.norm2.weight") == "blocks.0.norm3.weight"
    assert diffusers_to_official_name("proj_out.weight") == "head.head.weight"
    assert diffusers_to_official_name("vace_blocks.0.proj_in.bias") == "vace_blocks.0.before_proj.bias"
    assert diffusers_to_official_name("condition_embedder.time_proj.weight") == "time_projection.1.weight"
    assert diffusers_to_official_name("not_a_wan_key.weight") is None
    with pytest.raises(CheckpointError, match="'not_a_wan_key.weight': it is not part of a Wan DiT"):
        official_to_diffusers({"not_a_wan_key.weight": torch.zeros(1)})


def test_optional_kernels_are_dispatched_with_bf16_inputs(monkeypatch):
    """Fake flash-attn / sageattention modules: lazily imported, fed bf16 [B, S, H, d], output cast back."""
    import sys
    import types

    from wan_core.dit import attention as attn

    calls = []

    def fake_flash(q, k, v):
        calls.append(("flash", q.dtype, tuple(q.shape)))
        return attn.sdpa(q, k, v), None  # flash-attn 3 style (out, lse)

    def fake_sage(q, k, v, tensor_layout, is_causal):
        calls.append(("sage", q.dtype, tensor_layout))
        return attn.sdpa(q, k, v)

    monkeypatch.setitem(sys.modules, "flash_attn", types.SimpleNamespace(flash_attn_func=fake_flash))
    monkeypatch.setitem(sys.modules, "sageattention", types.SimpleNamespace(sageattn=fake_sage))
    attn._load.cache_clear()
    try:
        q, k, v = (torch.randn(2, 10, 2, 128) for _ in range(3))
        want = attn.sdpa(q, k, v)
        for name in ("flash_attn", "sageattention"):
            assert attn.check_backend(name) == name
            out = attn._kernel(name)(q, k, v)
            assert out.dtype == torch.float32 and rel_err(out, want) < 2e-2
        assert calls == [("flash", torch.bfloat16, (2, 10, 2, 128)), ("sage", torch.bfloat16, "NHD")]
        assert attn.select("flash_attn", torch.device("cpu")) is attn.sdpa  # CUDA-only kernel on CPU: SDPA
    finally:
        attn._load.cache_clear()


def test_fp8_storage_with_a_half_compute_dtype_runs(tmp_path):
    """fp8 Linear storage + bf16 compute (the pipeline's dtype="fp8_e4m3fn" on a GPU): convs follow the compute dtype."""
    import wan_core
    from wan_core.dit.tiny import tiny_dit_state_dict

    dit = wan_core.load_dit(tiny_dit_state_dict("wan2.1-vace"), device="cpu", dtype=torch.float8_e4m3fn)
    dit.set_compute_dtype(torch.bfloat16)
    assert dit.blocks[0].self_attn.q.weight.dtype == torch.float8_e4m3fn
    assert dit.patch_embedding.weight.dtype == torch.bfloat16
    x = torch.randn(1, 16, 2, 4, 4)
    out = dit(x, torch.tensor([500.0]), [torch.randn(3, dit.config.text_dim)], vace_context=torch.randn(1, 96, 2, 4, 4))
    assert out.shape == (1, 16, 2, 4, 4) and torch.isfinite(out).all()
