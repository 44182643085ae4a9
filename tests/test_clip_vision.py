"""CLIP-H vision: parity with transformers' CLIPVisionModel (penultimate hidden state) in every layout.

Weights come from a randomly initialised transformers model and are converted here, in the
test, into each layout (ComfyUI ``vision_model.`` names, bare HF names, official open-clip
``visual.*`` names with fused ``to_qkv`` in a .pth, ...), then loaded through wan_core.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import rel_err

import wan_core
from wan_core.errors import InputError, UnsupportedModelError
from wan_core.tiny_models import TINY
from wan_core.vision.clip import heads_for_width

transformers = pytest.importorskip("transformers", reason="transformers is the CLIP reference implementation")

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def reference():
    cfg = transformers.CLIPVisionConfig(
        hidden_size=TINY.clip_width,
        intermediate_size=TINY.clip_mlp,
        num_hidden_layers=TINY.clip_layers,
        num_attention_heads=TINY.clip_heads,
        image_size=TINY.clip_image_size,
        patch_size=TINY.clip_patch,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
    )
    torch.manual_seed(2)
    model = transformers.CLIPVisionModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    sd = {k: v.clone() for k, v in model.state_dict().items() if "position_ids" not in k}
    return model, {k.removeprefix("vision_model."): v for k, v in sd.items()}


def official_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """WAN_SPEC 6: [-1,1] image, bicubic resize to size x size (no antialias), back to [0,1], mean/std."""
    x = images.permute(0, 3, 1, 2) * 2 - 1
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return ((x * 0.5 + 0.5) - MEAN) / STD


def expected(model, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(pixel_values=official_pixels(images, TINY.clip_image_size), output_hidden_states=True)
    return out.hidden_states[-2]


def hf_to_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Bare HF names -> official open-clip ``visual.*`` names, q/k/v fused (WAN_SPEC 6, right to left)."""
    out = {
        "visual.cls_embedding": sd["embeddings.class_embedding"].view(1, 1, -1),
        "visual.pos_embedding": sd["embeddings.position_embedding.weight"][None],
        "visual.patch_embedding.weight": sd["embeddings.patch_embedding.weight"],
        "visual.pre_norm.weight": sd["pre_layrnorm.weight"],
        "visual.pre_norm.bias": sd["pre_layrnorm.bias"],
        "visual.post_norm.weight": sd["post_layernorm.weight"],
        "visual.post_norm.bias": sd["post_layernorm.bias"],
        "visual.head": torch.randn(TINY.clip_width, 32),
        "textual.token_embedding.weight": torch.randn(10, 8),  # the official file is a full CLIP
        "log_scale": torch.tensor(4.6),
    }
    for i in range(TINY.clip_layers):
        h, o = f"encoder.layers.{i}.", f"visual.transformer.{i}."
        for part in ("weight", "bias"):
            out[o + f"attn.to_qkv.{part}"] = torch.cat([sd[h + f"self_attn.{n}_proj.{part}"] for n in "qkv"])
            out[o + f"attn.proj.{part}"] = sd[h + f"self_attn.out_proj.{part}"]
            out[o + f"norm1.{part}"] = sd[h + f"layer_norm1.{part}"]
            out[o + f"norm2.{part}"] = sd[h + f"layer_norm2.{part}"]
            out[o + f"mlp.0.{part}"] = sd[h + f"mlp.fc1.{part}"]
            out[o + f"mlp.2.{part}"] = sd[h + f"mlp.fc2.{part}"]
    return out


def hf_to_openclip(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Bare HF names -> standard OpenCLIP ``visual.*`` names (conv1, ln_pre, resblocks, in_proj_weight)."""
    out = {
        "visual.class_embedding": sd["embeddings.class_embedding"],
        "visual.positional_embedding": sd["embeddings.position_embedding.weight"],
        "visual.conv1.weight": sd["embeddings.patch_embedding.weight"],
        "visual.ln_pre.weight": sd["pre_layrnorm.weight"],
        "visual.ln_pre.bias": sd["pre_layrnorm.bias"],
        "visual.ln_post.weight": sd["post_layernorm.weight"],
        "visual.ln_post.bias": sd["post_layernorm.bias"],
        "visual.proj": torch.randn(TINY.clip_width, 32),
    }
    for i in range(TINY.clip_layers):
        h, o = f"encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        out[o + "attn.in_proj_weight"] = torch.cat([sd[h + f"self_attn.{n}_proj.weight"] for n in "qkv"])
        out[o + "attn.in_proj_bias"] = torch.cat([sd[h + f"self_attn.{n}_proj.bias"] for n in "qkv"])
        for part in ("weight", "bias"):
            out[o + f"attn.out_proj.{part}"] = sd[h + f"self_attn.out_proj.{part}"]
            out[o + f"ln_1.{part}"] = sd[h + f"layer_norm1.{part}"]
            out[o + f"ln_2.{part}"] = sd[h + f"layer_norm2.{part}"]
            out[o + f"mlp.c_fc.{part}"] = sd[h + f"mlp.fc1.{part}"]
            out[o + f"mlp.c_proj.{part}"] = sd[h + f"mlp.fc2.{part}"]
    return out


def make_layout(sd, layout, tmp_path):
    if layout == "comfyui_file":
        from safetensors.torch import save_file

        comfy = {"vision_model." + k: v for k, v in sd.items()}
        comfy["visual_projection.weight"] = torch.randn(32, TINY.clip_width)
        path = tmp_path / "clip_vision_h.safetensors"
        save_file(comfy, str(path))
        return str(path)
    if layout == "hf_bare":
        return dict(sd)
    if layout == "full_clip_model":  # CLIPModel-style dict: text tower present, vision under vision_model.
        full = {"vision_model." + k: v for k, v in sd.items()}
        full.update({"text_model.encoder.layers.0.self_attn.q_proj.weight": torch.zeros(8, 8)})
        return full
    if layout == "official_pth":
        path = tmp_path / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
        torch.save(hf_to_official(sd), path)
        return path
    if layout == "official_prefixed":
        return {"model." + k: v for k, v in hf_to_official(sd).items()}
    if layout == "openclip":
        return hf_to_openclip(sd)
    raise AssertionError(layout)


@pytest.mark.parametrize(
    "layout", ["comfyui_file", "hf_bare", "full_clip_model", "official_pth", "official_prefixed", "openclip"]
)
def test_parity_with_transformers(layout, reference, tmp_path):
    model, sd = reference
    clip = wan_core.load_clip_vision(make_layout(sd, layout, tmp_path), device="cpu")
    cfg = clip.config
    assert (cfg.width, cfg.layers, cfg.heads, cfg.patch, cfg.image_size, cfg.tokens) == (64, 3, 4, 14, 56, 17)
    images = torch.rand(2, 72, 100, 3)  # non-square, not the model size: exercises the official resize
    got = clip.encode(images)
    assert got.shape == (2, 17, 64) and got.dtype == torch.float32 and got.device.type == "cpu"
    assert rel_err(got, expected(model, images)) <= 1e-4


def test_tiny_builders_match_transformers(tmp_path):
    """wan_core.vision.tiny writes both layouts; each equals transformers fed the same weights."""
    from safetensors.torch import load_file

    from wan_core.vision.tiny import write_tiny_clip

    write_tiny_clip(tmp_path / "clip_vision_h.safetensors", seed=3)
    write_tiny_clip(tmp_path / "clip_official.pth", seed=3, layout="official")
    hf_sd = {
        k.removeprefix("vision_model."): v
        for k, v in load_file(str(tmp_path / "clip_vision_h.safetensors")).items()
        if k.startswith("vision_model.")
    }
    cfg = transformers.CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=56,
        patch_size=14,
        hidden_act="gelu",
    )
    model = transformers.CLIPVisionModel(cfg).eval()
    missing, unexpected = model.load_state_dict(hf_sd, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing)
    images = torch.rand(1, 56, 56, 3)
    for name in ("clip_vision_h.safetensors", "clip_official.pth"):
        clip = wan_core.load_clip_vision(tmp_path / name, device="cpu")
        assert rel_err(clip.encode(images), expected(model, images)) <= 1e-4, name


def test_first_last_frames_concatenate_tokens(reference):
    _, sd = reference
    clip = wan_core.load_clip_vision(dict(sd), device="cpu")
    first, last = torch.rand(1, 60, 60, 3), torch.rand(1, 60, 60, 3)
    both = clip.encode_first_last(first, last)
    assert both.shape == (1, 34, 64)
    assert torch.allclose(both[:, :17], clip.encode(first), atol=1e-6)
    assert torch.allclose(both[:, 17:], clip.encode(last), atol=1e-6)


def test_center_crop_ignores_the_sides(reference):
    _, sd = reference
    clip = wan_core.load_clip_vision(dict(sd), device="cpu")
    square = torch.rand(1, 84, 84, 3)
    wide = torch.cat([torch.rand(1, 84, 30, 3), square, torch.rand(1, 84, 30, 3)], dim=2)
    assert torch.allclose(clip.encode(wide, crop="center"), clip.encode(square, crop="center"), atol=1e-6)
    assert rel_err(clip.encode(wide, crop="none"), clip.encode(square, crop="none")) > 1e-2
    with pytest.raises(InputError):
        clip.encode(square, crop="sides")
    with pytest.raises(InputError):
        clip.encode(torch.rand(1, 3, 56, 56))  # NCHW instead of ComfyUI's NHWC


def test_heads_rule():
    assert heads_for_width(1280) == 16  # CLIP-H/14, the model Wan uses
    assert heads_for_width(1024) == 16 and heads_for_width(768) == 12
    assert heads_for_width(TINY.clip_width) == TINY.clip_heads


def test_not_a_clip_vision_model():
    with pytest.raises(UnsupportedModelError, match="not a CLIP vision model"):
        wan_core.load_clip_vision({"encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(4, 4)})


def test_real_clip_h_sizes_from_shapes():
    """WAN_SPEC 6 shapes (ComfyUI clip_vision_h names) on the meta device -> 257 tokens, 16 heads, 224 px."""
    from wan_core.checkpoints import open_checkpoint
    from wan_core.vision.clip import ClipVisionConfig
    from wan_core.vision.clip_keys import to_official

    def meta(*shape):
        return torch.empty(*shape, device="meta", dtype=torch.float16)

    sd = {
        "vision_model.embeddings.class_embedding": meta(1280),
        "vision_model.embeddings.patch_embedding.weight": meta(1280, 3, 14, 14),
        "vision_model.embeddings.position_embedding.weight": meta(257, 1280),
        "vision_model.pre_layrnorm.weight": meta(1280),
        "vision_model.pre_layrnorm.bias": meta(1280),
    }
    for i in range(32):
        b = f"vision_model.encoder.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            sd[b + f"self_attn.{n}.weight"], sd[b + f"self_attn.{n}.bias"] = meta(1280, 1280), meta(1280)
        sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"] = meta(5120, 1280), meta(5120)
        sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"] = meta(1280, 5120), meta(1280)
    src = to_official(open_checkpoint(sd))
    cfg = ClipVisionConfig.from_source(src)
    assert (cfg.width, cfg.layers, cfg.heads, cfg.patch, cfg.image_size, cfg.tokens, cfg.mlp) == (
        1280,
        32,
        16,
        14,
        224,
        257,
        5120,
    )
    assert src.shape("transformer.31.attn.to_qkv.weight") == (3840, 1280)


def test_bf16_compute_close_to_fp32(reference):
    _, sd = reference
    images = torch.rand(1, 64, 64, 3)
    ref = wan_core.load_clip_vision(dict(sd), device="cpu", dtype="fp32").encode(images)
    low = wan_core.load_clip_vision(dict(sd), device="cpu", dtype="bf16").encode(images)
    assert low.dtype == torch.float32 and rel_err(low, ref) < 3e-2


@pytest.mark.parametrize("layout", ["comfyui", "official"])
def test_scaled_fp8_file_equals_its_dequantised_weights(reference, layout):
    """ComfyUI-style scaled fp8: per-tensor .scale_weight, in the HF layout q/k/v each with their own scale."""
    from wan_core.fp8 import dequantize_state_dict, quantize_state_dict

    model, sd = reference
    named = {"vision_model." + k: v for k, v in sd.items()} if layout == "comfyui" else hf_to_official(sd)
    q = quantize_state_dict(named, lambda name, t: ".layers." in name or ".transformer." in name)
    assert sum(k.endswith(".scale_weight") for k in q) == (6 if layout == "comfyui" else 4) * TINY.clip_layers
    images = torch.rand(1, 56, 56, 3)
    got = wan_core.load_clip_vision(q, device="cpu").encode(images)
    if layout == "comfyui":  # transformers fed the dequantised weights
        ref = transformers.CLIPVisionModel(model.config).eval()
        deq = {k.removeprefix("vision_model."): v for k, v in dequantize_state_dict(q).items()}
        missing, unexpected = ref.load_state_dict(deq, strict=False)
        assert not unexpected and all("position_ids" in k for k in missing)
        want = expected(ref, images)
    else:  # one scale for the fused to_qkv: compare with the float load (its parity is tested above)
        want = wan_core.load_clip_vision(dequantize_state_dict(q), device="cpu").encode(images)
    assert rel_err(got, want) <= 1e-4
