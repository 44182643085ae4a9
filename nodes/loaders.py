"""Loader nodes: diffusion model (+ A14B low-noise expert), VAE, text encoder, CLIP vision.

Each shows the variant wan_core detected from the file's keys and shapes on the node
(``ui.text``, drawn as a badge by js/wan_core.js). ComfyUI caches node outputs while
the inputs are unchanged, so a file is not reloaded on every queue; loaders that read the
same file the same way share one copy (:mod:`.model_cache`). Inside ComfyUI the weights
load into the offload device's memory and ComfyUI's manager moves them in before each use.
"""

from __future__ import annotations

import wan_core
from wan_core.devices import resolve_dtype
from wan_core.dit.model import WanDiT
from wan_core.errors import InputError
from wan_core.modelset import ModelSet
from wan_core.text.loader import TextEncoder

from . import comfy_bridge as bridge
from . import model_cache
from .common import NONE_CHOICE, combo, model_combo, widget, with_ui_text
from .types import CATEGORY, WAN_CLIP_VISION, WAN_MODEL, WAN_TEXT_ENCODER, WAN_VAE

DTYPES = ["auto", "bf16", "fp16", "fp32"]
WEIGHT_DTYPES = [*DTYPES, "fp8_e4m3fn", "fp8_e5m2", "int8"]
ATTENTION = [
    "auto",
    "sdpa",
    "sdpa_cudnn",
    "sdpa_flash",
    "sdpa_efficient",
    "flash_attn",
    "sageattention",
    "int8",
    "int8_fp16pv",
    "fp8",
]


def _dtype(name: str) -> str | None:
    return None if name == "auto" else name


def _load_one_dit(
    name: str, weight_dtype: str, attention: str, block_swap: int, park: bool = False, fast_8bit: bool = False
) -> WanDiT:
    """One DiT file, shared with every loader that reads it with the same weight dtype (see model_cache).

    ``park``: standalone, keep it on the offload device (the sampler moves it in for its steps).
    ``fast_8bit``: the opt-in approximate 8-bit compute (part of the shared copy's identity).
    """
    path = bridge.model_path("diffusion_models", name)
    where = bridge.placement("diffusion")
    initial = where.offload if park else where.initial
    dtype = _dtype(weight_dtype)

    def load() -> WanDiT:
        return wan_core.load_dit(
            path, device=where.compute, dtype=dtype, attention=attention, storage_device=initial, fast_8bit=fast_8bit
        )

    key = ("dit", *model_cache.file_identity(path), dtype, str(where.compute), fast_8bit)
    dit = model_cache.shared(key, load)
    dit.set_attention(attention)
    bridge.manage(dit, where, block_swap)
    return dit


class WanModelLoader:
    DESCRIPTION = (
        "Loads a Wan DiT from models/diffusion_models (any layout: official, ComfyUI, diffusers, "
        "fp8-scaled, GGUF Q8_0/Q6_K/Q5_K/Q4_K/...). For Wan2.2 A14B pick the high-noise expert as model and the low-noise expert "
        "as low_noise_model: one sampler then switches between them."
    )
    CATEGORY = f"{CATEGORY}/loaders"
    FUNCTION = "load"
    RETURN_TYPES = (WAN_MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The DiT (and low-noise expert), for the Wan sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": model_combo("diffusion_models", "DiT file; the variant is detected from its weights."),
                "low_noise_model_name": model_combo(
                    "diffusion_models", "Wan2.2 A14B only: the low-noise expert file; 'none' otherwise.", optional=True
                ),
                "weight_dtype": combo(
                    WEIGHT_DTYPES,
                    "auto keeps the stored weights (bf16/fp16/fp8/GGUF) and computes in "
                    "bf16 on GPUs, fp32 on CPU; fp8 stores weights in fp8 (half the memory, "
                    "dequantised per layer); int8 quantises them to int8 at load (half the memory, "
                    "for GPUs without fp8). GGUF files always stay in their own quantisation.",
                ),
                "attention": combo(
                    ATTENTION,
                    "Attention kernel; auto picks the fastest exact one for this GPU (flash-attn 3 when installed, else "
                    "cuDNN on Hopper). sdpa_* pin one PyTorch kernel; int8 / int8_fp16pv are our approximate 8-bit "
                    "kernels; fp8 is flash-attn 3's approximate FP8 kernel (Hopper, needs flash-attn 3).",
                ),
                "block_swap": widget(
                    "INT",
                    "Blocks kept on the CPU and streamed to the GPU when used (saves VRAM). 0 = automatic: "
                    "as many as the memory ComfyUI's manager grants for the run requires (none when the "
                    "model fits); a number here is used as given.",
                    default=0,
                    min=0,
                    max=40,
                ),
            },
            "optional": {
                "gpus": widget(
                    "STRING",
                    "Several GPUs for one video, e.g. '0,1': ComfyUI's process runs on the first, a worker process "
                    "on each other (same weights, kept between prompts). Empty = one GPU.",
                    default="",
                ),
                "fast_8bit": widget(
                    "BOOLEAN",
                    "Opt-in approximate 8-bit compute: FP8 matmuls with per-token scales (Hopper GPUs, sm90+); "
                    "with attention auto also FP8 attention where flash-attn 3 is installed. Slightly different "
                    "results. Off = exact bf16.",
                    default=False,
                ),
            },
        }

    def load(
        self,
        model_name: str,
        low_noise_model_name: str,
        weight_dtype: str,
        attention: str,
        block_swap: int,
        gpus: str = "",
        fast_8bit: bool = False,
    ) -> dict:
        if gpus.strip():
            if fast_8bit:
                raise InputError("fast_8bit is not available with several GPUs (gpus) yet: turn one of them off.")
            return self._load_parallel(gpus, model_name, low_noise_model_name, weight_dtype, attention, block_swap)
        high = _load_one_dit(model_name, weight_dtype, attention, block_swap, fast_8bit=fast_8bit)
        low = None
        if low_noise_model_name != NONE_CHOICE:  # the sampler brings each expert in when its steps start
            low = _load_one_dit(
                low_noise_model_name, weight_dtype, attention, block_swap, park=True, fast_8bit=fast_8bit
            )
        models = ModelSet(high=high, low=low)  # checks that the two experts belong together
        return with_ui_text(models.describe(), models)

    @staticmethod
    def _load_parallel(
        gpus: str, model_name: str, low_noise_model_name: str, weight_dtype: str, attention: str, block_swap: int
    ) -> dict:
        from . import multigpu

        names = {"high": model_name}
        if low_noise_model_name != NONE_CHOICE:
            names["low"] = low_noise_model_name
        specs = {
            role: multigpu.DiTSpec(
                bridge.model_path("diffusion_models", name), _dtype(weight_dtype), attention, block_swap
            )
            for role, name in names.items()
        }
        dits, parallel = multigpu.load_parallel(gpus, specs)
        models = ModelSet(high=dits["high"], low=dits.get("low"), placement=parallel)  # the one pair check
        return with_ui_text(f"{models.describe()} on {parallel.describe()}", models)


class WanVAELoader:
    DESCRIPTION = "Loads a Wan VAE (Wan2.1 z16 or Wan2.2 z48, detected from the weights) from models/vae."
    CATEGORY = f"{CATEGORY}/loaders"
    FUNCTION = "load"
    RETURN_TYPES = (WAN_VAE,)
    RETURN_NAMES = ("vae",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae_name": model_combo(
                    "vae", "VAE file: wan_2.1_vae for Wan2.1 and Wan2.2 A14B, wan2.2_vae for TI2V-5B."
                ),
                "dtype": combo(DTYPES, "Working dtype of the VAE; auto = bf16 on GPUs, fp32 on CPU."),
            }
        }

    def load(self, vae_name: str, dtype: str) -> dict:
        path = bridge.model_path("vae", vae_name)
        where = bridge.placement("vae")
        dt = resolve_dtype(_dtype(dtype), where.compute)
        key = ("vae", *model_cache.file_identity(path), dt)
        vae = model_cache.shared(key, lambda: wan_core.load_vae(path, device=where.initial, dtype=dt))
        bridge.manage(vae, where)
        cfg = vae.config
        return with_ui_text(f"wan{cfg.version} VAE (z{cfg.z_dim}, /{cfg.spatial_stride})", vae)


class WanTextEncoderLoader:
    DESCRIPTION = (
        "Loads the umT5-XXL text encoder from models/text_encoders (tokenizer embedded in ComfyUI's "
        "files). Prompt embeddings are cached, so an unchanged prompt never runs the encoder again."
    )
    CATEGORY = f"{CATEGORY}/loaders"
    FUNCTION = "load"
    RETURN_TYPES = (WAN_TEXT_ENCODER,)
    RETURN_NAMES = ("text_encoder",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text_encoder_name": model_combo("text_encoders", "umT5-XXL encoder file (bf16 or fp8-scaled)."),
                "device": combo(["auto", "cpu"], "Where the encoder runs; cpu keeps the GPU free for the DiT."),
                "dtype": combo(DTYPES, "Compute dtype; auto = bf16 on GPUs, fp32 on CPU."),
                "keep_loaded": widget(
                    "BOOLEAN",
                    "Keep the weights in memory after encoding (off = release them; cached prompts still work).",
                    default=True,
                ),
            }
        }

    def load(self, text_encoder_name: str, device: str, dtype: str, keep_loaded: bool) -> dict:
        path = bridge.model_path("text_encoders", text_encoder_name)
        where = bridge.placement("text", on_cpu=device == "cpu")
        dt = resolve_dtype(_dtype(dtype), where.compute)

        def load() -> TextEncoder:
            return wan_core.load_text_encoder(
                path, device=where.compute, dtype=dt, keep_loaded=keep_loaded, storage_device=where.initial
            )

        te = model_cache.shared(("text", *model_cache.file_identity(path), dt, str(where.compute)), load)
        te.keep_loaded = keep_loaded  # the encoder's module registers with ComfyUI's manager when it loads
        cfg = te.config
        return with_ui_text(f"umT5 (d{cfg.d_model}, {cfg.layers} layers)", te)


class WanCLIPVisionLoader:
    DESCRIPTION = "Loads the CLIP-H vision encoder (Wan2.1 I2V / FLF2V / Fun) from models/clip_vision."
    CATEGORY = f"{CATEGORY}/loaders"
    FUNCTION = "load"
    RETURN_TYPES = (WAN_CLIP_VISION,)
    RETURN_NAMES = ("clip_vision",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip_name": model_combo("clip_vision", "CLIP-H vision file, e.g. clip_vision_h.safetensors."),
            }
        }

    def load(self, clip_name: str) -> dict:
        path = bridge.model_path("clip_vision", clip_name)
        where = bridge.placement("clip")
        dt = resolve_dtype(None, where.compute)
        key = ("clip", *model_cache.file_identity(path), dt)
        clip = model_cache.shared(key, lambda: wan_core.load_clip_vision(path, device=where.initial, dtype=dt))
        bridge.manage(clip.model, where)
        cfg = clip.config
        return with_ui_text(f"CLIP vision (w{cfg.width}, {cfg.tokens} tokens)", clip)


NODE_CLASSES = {
    "WanCoreModelLoader": (WanModelLoader, "Wan Model Loader"),
    "WanCoreVAELoader": (WanVAELoader, "Wan VAE Loader"),
    "WanCoreTextEncoderLoader": (WanTextEncoderLoader, "Wan Text Encoder Loader"),
    "WanCoreCLIPVisionLoader": (WanCLIPVisionLoader, "Wan CLIP Vision Loader"),
}
