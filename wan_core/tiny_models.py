"""File names of the tiny random-weight models written by ``python -m wan_core make-tiny-models``.

They equal the names of the public ComfyUI repackaged releases that the shipped
workflows reference, so any workflow can be smoke-tested unchanged. Folder names
are ComfyUI's model folders. ``kind`` says which tiny builder writes the file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TinyFile:
    folder: str
    name: str
    kind: str  # a DiT variant name, "vae2.1", "vae2.2", "umt5", "clip_vision", "lora"
    layout: str = "comfyui"  # key layout / storage: "comfyui", "fp8_scaled"


TINY_FILES: tuple[TinyFile, ...] = (
    TinyFile("diffusion_models", "wan2.1_t2v_1.3B_bf16.safetensors", "wan2.1-t2v"),
    TinyFile("diffusion_models", "wan2.1_t2v_14B_bf16.safetensors", "wan2.1-t2v"),
    TinyFile("diffusion_models", "wan2.1_i2v_480p_14B_bf16.safetensors", "wan2.1-i2v"),
    TinyFile("diffusion_models", "wan2.1_flf2v_720p_14B_fp16.safetensors", "wan2.1-flf2v"),
    TinyFile("diffusion_models", "wan2.1_vace_1.3B_fp16.safetensors", "wan2.1-vace"),
    TinyFile("diffusion_models", "wan2.1_fun_control_1.3B_bf16.safetensors", "wan2.1-fun-control"),
    TinyFile("diffusion_models", "wan2.1_fun_inp_1.3B_bf16.safetensors", "wan2.1-fun-inp"),
    TinyFile("diffusion_models", "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2-t2v", "fp8_scaled"),
    TinyFile("diffusion_models", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", "wan2.2-t2v", "fp8_scaled"),
    TinyFile("diffusion_models", "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2-i2v", "fp8_scaled"),
    TinyFile("diffusion_models", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors", "wan2.2-i2v", "fp8_scaled"),
    TinyFile("diffusion_models", "wan2.2_ti2v_5B_fp16.safetensors", "wan2.2-ti2v"),
    TinyFile("diffusion_models", "wan2.1_fun_camera_v1.1_1.3B_bf16.safetensors", "wan2.1-fun-camera"),
    TinyFile(
        "diffusion_models", "wan2.2_fun_camera_high_noise_14B_fp8_scaled.safetensors", "wan2.2-fun-camera", "fp8_scaled"
    ),
    TinyFile(
        "diffusion_models", "wan2.2_fun_camera_low_noise_14B_fp8_scaled.safetensors", "wan2.2-fun-camera", "fp8_scaled"
    ),
    TinyFile("vae", "wan_2.1_vae.safetensors", "vae2.1"),
    TinyFile("vae", "wan2.2_vae.safetensors", "vae2.2"),
    TinyFile("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "umt5", "fp8_scaled"),
    TinyFile("clip_vision", "clip_vision_h.safetensors", "clip_vision"),
    TinyFile("loras", "wan2.1_t2v_1.3B_example_lora.safetensors", "lora"),
    # step-distilled (4-step, CFG 1) LoRAs: lightx2v for Wan2.1 T2V 14B, Lightning high/low for Wan2.2 T2V A14B
    TinyFile("loras", "Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32.safetensors", "lora"),
    TinyFile("loras", "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors", "lora"),
    TinyFile("loras", "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors", "lora"),
)


@dataclass(frozen=True)
class TinySizes:
    """Sizes shared by every tiny model, so the tiny pipeline fits together end to end.

    The DiT keeps head dim 128 (so ``heads = dim // 128`` detection is realistic);
    its ``text_dim`` equals the tiny umT5 width and its CLIP width equals the tiny
    CLIP-H width.
    """

    dit_dim: int = 256  # 2 heads x 128
    dit_ffn: int = 512
    dit_layers: int = 2
    dit_freq_dim: int = 256
    vace_layers: tuple[int, ...] = (0, 1)
    text_dim: int = 64  # umT5 d_model
    t5_layers: int = 2
    t5_heads: int = 4
    t5_d_kv: int = 16
    t5_d_ff: int = 96
    clip_width: int = 64
    clip_layers: int = 3
    clip_heads: int = 4
    clip_mlp: int = 128
    clip_image_size: int = 56  # patch 14 -> 16 patches + class token = 17 tokens
    clip_patch: int = 14
    vae21_base_dim: int = 16
    vae22_base_dim: int = 16
    vae22_decoder_dim: int = 32
    lora_rank: int = 4


TINY = TinySizes()
