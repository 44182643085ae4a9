"""Builds the shipped workflows (UI format) and their API twins from the node definitions.

    python workflows/build_workflows.py

Sampler settings follow the official defaults (WAN_SPEC 7.5); model file names are the
public ComfyUI repackaged release names (wan_core.tiny_models.TINY_FILES).
tests/test_workflows.py checks that the committed files stay in sync with this script's
output conversion and validate against the node definitions.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from workflow_tools import API_DIR, WORKFLOWS, GraphBuilder, dump_json, ui_to_api  # noqa: E402

REPACK_21 = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/tree/main/split_files"
REPACK_22 = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/tree/main/split_files"
TE = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
VAE21 = "wan_2.1_vae.safetensors"
VAE22 = "wan2.2_vae.safetensors"
CLIP = "clip_vision_h.safetensors"
# Step-distilled LoRAs (4 steps, CFG 1): lightx2v's for Wan2.1 T2V 14B (Kijai's ComfyUI extraction) and the
# Wan2.2 T2V A14B Lightning pair (Comfy-Org repackaged), one per expert.
DISTILL_21 = "Wan21_T2V_14B_lightx2v_cfg_step_distill_lora_rank32.safetensors"
DISTILL_22_HIGH = "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors"
DISTILL_22_LOW = "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors"
KIJAI = "https://huggingface.co/Kijai/WanVideo_comfy"
# The sigma list those releases sample with: linspace(1, 0, 5) shifted by 5 (lightx2v, Wan2.2-Lightning).
LIGHTNING_SIGMAS = "1.0, 0.9375, 0.833333, 0.625, 0.0"
NEG = ""  # empty = the official negative prompt of the model's task
PACK_NODE_PREFIX = "WanCore"

# Direct downloads of the released files, for the editor's missing-models dialog ({name, url, directory}).
# Each URL was checked against public references to the Comfy-Org repackaged repositories; the example LoRA
# of the LoRA-stack workflow is a placeholder name with no release, so it has no entry.
_RESOLVE_21 = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
_RESOLVE_22 = "https://huggingface.co/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files"
MODEL_SOURCES: dict[str, tuple[str, str]] = {  # file name -> (ComfyUI model folder, repository split_files URL)
    "wan2.1_t2v_1.3B_bf16.safetensors": ("diffusion_models", _RESOLVE_21),
    "wan2.1_t2v_14B_bf16.safetensors": ("diffusion_models", _RESOLVE_21),
    "wan2.1_i2v_480p_14B_bf16.safetensors": ("diffusion_models", _RESOLVE_21),
    "wan2.1_flf2v_720p_14B_fp16.safetensors": ("diffusion_models", _RESOLVE_21),
    "wan2.1_vace_1.3B_fp16.safetensors": ("diffusion_models", _RESOLVE_21),
    "wan2.1_fun_control_1.3B_bf16.safetensors": ("diffusion_models", _RESOLVE_21),
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": ("diffusion_models", _RESOLVE_22),
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors": ("diffusion_models", _RESOLVE_22),
    "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors": ("diffusion_models", _RESOLVE_22),
    "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors": ("diffusion_models", _RESOLVE_22),
    "wan2.2_ti2v_5B_fp16.safetensors": ("diffusion_models", _RESOLVE_22),
    "wan2.1_fun_camera_v1.1_1.3B_bf16.safetensors": ("diffusion_models", _RESOLVE_21),
    TE: ("text_encoders", _RESOLVE_21),
    VAE21: ("vae", _RESOLVE_21),
    VAE22: ("vae", _RESOLVE_22),
    CLIP: ("clip_vision", _RESOLVE_21),
    DISTILL_22_HIGH: ("loras", _RESOLVE_22),
    DISTILL_22_LOW: ("loras", _RESOLVE_22),
    DISTILL_21: ("loras", ""),
}
# Files released outside the Comfy-Org repositories: their direct download URL.
DIRECT_URLS = {DISTILL_21: f"{KIJAI}/resolve/main/{DISTILL_21}"}


def model_entry(name: str) -> dict | None:
    """The editor's ModelFile {name, url, directory} for a released file name; None when it has no known URL."""
    if name not in MODEL_SOURCES:
        return None
    folder, base = MODEL_SOURCES[name]
    return {"name": name, "url": DIRECT_URLS.get(name) or f"{base}/{folder}/{name}", "directory": folder}


def pack_identity() -> tuple[str, str]:
    """(name, version) of this pack from pyproject.toml's [project] table (the registry id and version)."""
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    fields = dict(re.findall(r'^(name|version)\s*=\s*"([^"]+)"', project, flags=re.M))
    return fields["name"], fields["version"]


def add_pack_and_model_hints(workflow: dict) -> dict:
    """What the editor saves for a registry pack's nodes and what its missing-models dialog reads.

    Our nodes get ``properties.cnr_id`` / ``ver`` (so a missing pack can be named and installed) and, on
    nodes whose widgets select a released file, ``properties.models``; the workflow gets every such file
    in a top-level ``models`` list (the dialog offers to download the ones not found in their folder).
    """
    cnr_id, version = pack_identity()
    used: list[dict] = []
    for node in workflow["nodes"]:
        if not node["type"].startswith(PACK_NODE_PREFIX):
            continue
        node["properties"].update({"cnr_id": cnr_id, "ver": version})
        entries = [e for v in node["widgets_values"] if isinstance(v, str) and (e := model_entry(v))]
        if entries:
            node["properties"]["models"] = entries
        used += [e for e in entries if e not in used]
    workflow["models"] = used
    return workflow


def note(g: GraphBuilder, title: str, files: list[tuple[str, str]], repack: str, extra: str = "") -> None:
    lines = [f"## {title}", "", "Download these files into ComfyUI's model folders:", ""]
    lines += [f"- `models/{folder}/{name}`" for folder, name in files]
    lines += ["", f"Source: {repack} (the same file names).", ""]
    if extra:
        lines += [extra, ""]
    lines.append("An empty negative prompt uses the official one of the model's task.")
    g.add("MarkdownNote", {"text": "\n".join(lines)}, size=(380, 320))


# Every node gets a title of its own (unique in its workflow, saying what it does there): the editor
# shows it and writes it as the API prompt's _meta.title, which API clients use to find nodes.
def loaders(g: GraphBuilder, model: str, vae: str = VAE21, low: str = "none",
            what: str = "Wan2.1 DiT") -> tuple[int, int, int]:
    m = g.add("WanCoreModelLoader", {"model_name": model, "low_noise_model_name": low}, title=f"Load {what}")
    v = g.add("WanCoreVAELoader", {"vae_name": vae}, title=f"Load {'Wan2.2' if vae == VAE22 else 'Wan2.1'} VAE")
    t = g.add("WanCoreTextEncoderLoader", {"text_encoder_name": TE}, title="Load umT5 text encoder")
    return m, v, t


def text(g: GraphBuilder, t: int, m: int, prompt: str) -> int:
    return g.add("WanCoreTextEncode", {"positive": prompt, "negative": NEG},
                 {"text_encoder": (t, 0), "model": (m, 0)}, title="Prompt (positive, negative)")


def finish(g: GraphBuilder, m: int, v: int, te: int, cond: int, sampler: dict, fps: float, prefix: str,
           extra: dict | None = None, sigmas: int | None = None, sampler_title: str = "Sample video latent") -> None:
    inputs = {"model": (m, 0), "text_embeds": (te, 0), "conditioning": (cond, 0), **(extra or {})}
    if sigmas is not None:
        inputs["sigmas"] = (sigmas, 0)
    s = g.add("WanCoreSampler", sampler, inputs, title=sampler_title)
    d = g.add("WanCoreVAEDecode", {}, {"vae": (v, 0), "latent": (s, 0)}, title="Decode latent to frames")
    g.add("WanCoreSaveVideo", {"fps": fps, "filename_prefix": f"wan/{prefix}"}, {"frames": (d, 0)},
          title="Save video (mp4)")


def clip_loader(g: GraphBuilder) -> int:
    return g.add("WanCoreCLIPVisionLoader", {"clip_name": CLIP}, title="Load CLIP-H vision")


def load_image(g: GraphBuilder, name: str, title: str) -> int:
    return g.add("LoadImage", {"image": name}, title=title)


def start_image_with_clip(g: GraphBuilder) -> tuple[int, int]:
    """CLIP-H loader, start.png and its CLIP features: (image node, CLIP-embeds node)."""
    cv = clip_loader(g)
    img = load_image(g, "start.png", "Start image")
    ce = g.add("WanCoreCLIPVisionEncode", {}, {"clip_vision": (cv, 0), "image": (img, 0)},
               title="CLIP features of the start image")
    return img, ce


def empty_latent(g: GraphBuilder, v: int, width: int, height: int, length: int = 81,
                 title: str = "Empty video latent (text to video)") -> int:
    return g.add("WanCoreEmptyVideoLatent", {"width": width, "height": height, "length": length}, {"vae": (v, 0)},
                 title=title)


def sampler(steps: int, cfg: float, shift: float, cfg_low: float = -1.0, boundary: float = 0.0,
            solver: str = "unipc") -> dict:
    return {"seed": 42, "steps": steps, "cfg": cfg, "cfg_low_noise": cfg_low, "shift": shift, "solver": solver,
            "moe_boundary": boundary}


def t2v(name: str, model: str, width: int, height: int, sampler_values: dict, title: str) -> dict:
    g = GraphBuilder()
    note(g, title, [("diffusion_models", model), ("vae", VAE21), ("text_encoders", TE)], REPACK_21)
    m, v, t = loaders(g, model, what=f"{title} DiT")
    te = text(g, t, m, "A red fox trotting through fresh snow in a sunlit pine forest, cinematic.")
    c = empty_latent(g, v, width, height)
    finish(g, m, v, te, c, sampler_values, 16.0, name)
    return g.build(title)


def i2v_480p() -> dict:
    model = "wan2.1_i2v_480p_14B_bf16.safetensors"
    g = GraphBuilder()
    note(g, "Wan2.1 I2V 14B 480p", [("diffusion_models", model), ("vae", VAE21), ("text_encoders", TE),
                                     ("clip_vision", CLIP)], REPACK_21, "Put start.png into ComfyUI's input folder.")
    m, v, t = loaders(g, model, what="Wan2.1 I2V 14B DiT")
    img, ce = start_image_with_clip(g)
    te = text(g, t, m, "The sun rises slowly over green hills, clouds drift, gentle camera push-in.")
    c = g.add("WanCoreImageToVideo", {"width": 832, "height": 480, "length": 81},
              {"vae": (v, 0), "start_image": (img, 0), "clip_embeds": (ce, 0)}, title="Start image to video latent")
    finish(g, m, v, te, c, sampler(40, 5.0, 3.0), 16.0, "i2v_480p")
    return g.build("Wan2.1 I2V 480p")


def flf2v() -> dict:
    model = "wan2.1_flf2v_720p_14B_fp16.safetensors"
    g = GraphBuilder()
    note(g, "Wan2.1 FLF2V 14B 720p", [("diffusion_models", model), ("vae", VAE21), ("text_encoders", TE),
                                       ("clip_vision", CLIP)], REPACK_21,
         "Put start.png and end.png into ComfyUI's input folder.")
    m, v, t = loaders(g, model, what="Wan2.1 FLF2V 14B DiT")
    cv = clip_loader(g)
    first = load_image(g, "start.png", "First frame image")
    last = load_image(g, "end.png", "Last frame image")
    ce = g.add("WanCoreCLIPVisionEncode", {}, {"clip_vision": (cv, 0), "image": (first, 0), "end_image": (last, 0)},
               title="CLIP features of first and last frame")
    te = text(g, t, m, "Time-lapse: the sun climbs from the hills high into the sky.")
    c = g.add("WanCoreFirstLastFrameToVideo", {"width": 1280, "height": 720, "length": 81},
              {"vae": (v, 0), "start_image": (first, 0), "end_image": (last, 0), "clip_embeds": (ce, 0)},
              title="First and last frame to video latent")
    finish(g, m, v, te, c, sampler(50, 5.0, 16.0), 16.0, "flf2v")
    return g.build("Wan2.1 FLF2V")


def control_chain(g: GraphBuilder, width: int, height: int) -> int:
    """control.mp4 -> resample to the length -> fit to the size -> canny edges."""
    vid = g.add("WanCoreLoadVideo", {"video": "control.mp4"}, title="Control video")
    rs = g.add("WanCoreResampleFrames", {"source_fps": 16.0, "target_fps": 16.0, "length": 81},
               {"frames": (vid, 0)}, title="Control video: resample to the length")
    fit = g.add("WanCoreFitFrames", {"width": width, "height": height, "mode": "crop"}, {"frames": (rs, 0)},
                title="Control video: fit to the size")
    return g.add("WanCoreCannyEdges", {"low_threshold": 100, "high_threshold": 200}, {"frames": (fit, 0)},
                 title="Control video: canny edges")


def vace_canny() -> dict:
    model = "wan2.1_vace_1.3B_fp16.safetensors"
    g = GraphBuilder()
    note(g, "Wan2.1 VACE 1.3B: canny control", [("diffusion_models", model), ("vae", VAE21), ("text_encoders", TE)],
         REPACK_21, "Put control.mp4 into ComfyUI's input folder (any video works: it is resampled and fitted).")
    m, v, t = loaders(g, model, what="Wan2.1 VACE 1.3B DiT")
    edges = control_chain(g, 832, 480)
    te = text(g, t, m, "A white robot walks across a neon-lit street at night.")
    c = g.add("WanCoreVaceToVideo", {"width": 832, "height": 480, "length": 81, "strength": 1.0},
              {"vae": (v, 0), "control_video": (edges, 0)}, title="VACE control to video latent")
    finish(g, m, v, te, c, sampler(50, 5.0, 16.0), 16.0, "vace_canny")
    return g.build("Wan2.1 VACE canny control")


def fun_control() -> dict:
    model = "wan2.1_fun_control_1.3B_bf16.safetensors"
    g = GraphBuilder()
    note(g, "Wan2.1 Fun-Control 1.3B", [("diffusion_models", model), ("vae", VAE21), ("text_encoders", TE),
                                         ("clip_vision", CLIP)], REPACK_21,
         "Put control.mp4 and start.png into ComfyUI's input folder.")
    m, v, t = loaders(g, model, what="Wan2.1 Fun-Control 1.3B DiT")
    edges = control_chain(g, 832, 480)
    img, ce = start_image_with_clip(g)
    te = text(g, t, m, "A paper boat drifts along a stream, soft morning light.")
    c = g.add("WanCoreFunControlToVideo", {"width": 832, "height": 480, "length": 81},
              {"vae": (v, 0), "control_video": (edges, 0), "start_image": (img, 0), "clip_embeds": (ce, 0),
               "model": (m, 0)}, title="Fun control to video latent")
    finish(g, m, v, te, c, sampler(50, 5.0, 5.0), 16.0, "fun_control")
    return g.build("Wan2.1 Fun-Control")


def lora_stack() -> dict:
    model, lora = "wan2.1_t2v_1.3B_bf16.safetensors", "wan2.1_t2v_1.3B_example_lora.safetensors"
    g = GraphBuilder()
    note(g, "Wan2.1 T2V 1.3B + LoRA stack", [("diffusion_models", model), ("vae", VAE21), ("text_encoders", TE),
                                              ("loras", lora)], REPACK_21,
         "Replace the example LoRA by your own Wan2.1 1.3B LoRAs; chain more Wan LoRA Stack nodes.")
    m, v, t = loaders(g, model, what="Wan2.1 T2V 1.3B DiT")
    l1 = g.add("WanCoreLoraStack", {"lora_name": lora, "strength": 0.8, "mode": "runtime"},
               title="LoRA 1 (runtime adapter)")
    l2 = g.add("WanCoreLoraStack", {"lora_name": lora, "strength": 0.3, "mode": "merge"}, {"lora_stack": (l1, 0)},
               title="LoRA 2 (merged)")
    ml = g.add("WanCoreApplyLoraStack", {}, {"model": (m, 0), "lora_stack": (l2, 0)}, title="Apply the LoRA stack")
    te = text(g, t, ml, "A watercolor painting of a lighthouse in a storm, waves crashing.")
    c = empty_latent(g, v, 832, 480)
    finish(g, ml, v, te, c, sampler(50, 5.0, 5.0), 16.0, "lora_stack")
    return g.build("Wan2.1 LoRA stack")


def a14b_t2v() -> dict:
    high, low = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
    g = GraphBuilder()
    note(g, "Wan2.2 T2V A14B (two experts, one sampler)", [("diffusion_models", high), ("diffusion_models", low),
                                                          ("vae", VAE21), ("text_encoders", TE)], REPACK_22,
         "The sampler switches from the high-noise to the low-noise expert at t = 875 (official).")
    m, v, t = loaders(g, high, low=low, what="Wan2.2 T2V A14B experts (high + low noise)")
    te = text(g, t, m, "A hot-air balloon floats over a valley of lavender fields at sunrise.")
    c = empty_latent(g, v, 1280, 720)
    finish(g, m, v, te, c, sampler(40, 4.0, 12.0, cfg_low=3.0, boundary=0.875), 16.0, "a14b_t2v",
           sampler_title="Sample video latent (high, then low noise expert)")
    return g.build("Wan2.2 A14B T2V")


def a14b_i2v() -> dict:
    high, low = "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"
    g = GraphBuilder()
    note(g, "Wan2.2 I2V A14B (two experts, one sampler)", [("diffusion_models", high), ("diffusion_models", low),
                                                          ("vae", VAE21), ("text_encoders", TE)], REPACK_22,
         "Put start.png into ComfyUI's input folder. Wan2.2 I2V takes no CLIP features.")
    m, v, t = loaders(g, high, low=low, what="Wan2.2 I2V A14B experts (high + low noise)")
    img = load_image(g, "start.png", "Start image")
    te = text(g, t, m, "The sun rises over the hills, birds fly across the sky.")
    c = g.add("WanCoreImageToVideo", {"width": 1280, "height": 720, "length": 81},
              {"vae": (v, 0), "start_image": (img, 0)}, title="Start image to video latent")
    finish(g, m, v, te, c, sampler(40, 3.5, 5.0, cfg_low=3.5, boundary=0.9), 16.0, "a14b_i2v",
           sampler_title="Sample video latent (high, then low noise expert)")
    return g.build("Wan2.2 A14B I2V")


def ti2v_5b() -> dict:
    model = "wan2.2_ti2v_5B_fp16.safetensors"
    g = GraphBuilder()
    note(g, "Wan2.2 TI2V 5B", [("diffusion_models", model), ("vae", VAE22), ("text_encoders", TE)], REPACK_22,
         "Uses the Wan2.2 VAE (48 channels). Disconnect the image for text-to-video. Put start.png into "
         "ComfyUI's input folder.")
    m, v, t = loaders(g, model, vae=VAE22, what="Wan2.2 TI2V 5B DiT")
    img = load_image(g, "start.png", "Start image (optional)")
    te = text(g, t, m, "The sun rises over rolling hills, a gentle breeze moves the grass.")
    c = g.add("WanCoreTI2VLatent", {"width": 1280, "height": 704, "length": 121},
              {"vae": (v, 0), "start_image": (img, 0)}, title="Text (+ image) to video latent (TI2V)")
    finish(g, m, v, te, c, sampler(50, 5.0, 5.0), 24.0, "ti2v_5b")
    return g.build("Wan2.2 TI2V 5B")


def distilled_sampler(boundary: float = 0.0) -> dict:
    """4 steps, CFG 1, Euler, shift 5: the settings of the lightx2v / Lightning step-distilled LoRAs."""
    return sampler(4, 1.0, 5.0, boundary=boundary, solver="euler")


DISTILL_NOTE = ("Step-distilled: 4 steps, CFG 1 (no negative pass), Euler on the sigma list {sigmas} (shift 5; "
                "shift 8 = 1.0, 0.96, 0.888889, 0.727273, 0.0 also works). {lora}")


def t2v_14b_distill() -> dict:
    model = "wan2.1_t2v_14B_bf16.safetensors"
    g = GraphBuilder()
    note(g, "Wan2.1 T2V 14B + lightx2v step-distill LoRA (4 steps)",
         [("diffusion_models", model), ("vae", VAE21), ("text_encoders", TE), ("loras", DISTILL_21)], REPACK_21,
         DISTILL_NOTE.format(sigmas=LIGHTNING_SIGMAS, lora=f"The LoRA is lightx2v's, from {KIJAI}."))
    m, v, t = loaders(g, model, what="Wan2.1 T2V 14B DiT")
    lora = g.add("WanCoreLoraStack", {"lora_name": DISTILL_21, "strength": 1.0, "mode": "merge"},
                 title="Step-distill LoRA (merged)")
    ml = g.add("WanCoreApplyLoraStack", {}, {"model": (m, 0), "lora_stack": (lora, 0)},
               title="Apply the step-distill LoRA")
    te = text(g, t, ml, "A red fox trotting through fresh snow in a sunlit pine forest, cinematic.")
    c = empty_latent(g, v, 832, 480)
    sigmas = g.add("WanCoreSigmas", {"sigmas": LIGHTNING_SIGMAS}, title="Distilled sigma schedule (4 steps)")
    finish(g, ml, v, te, c, distilled_sampler(), 16.0, "t2v_14b_distill", sigmas=sigmas,
           sampler_title="Sample video latent (4 distilled steps)")
    return g.build("Wan2.1 T2V 14B distilled (4 steps)")


def a14b_t2v_distill() -> dict:
    high, low = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
    g = GraphBuilder()
    note(g, "Wan2.2 T2V A14B + Lightning step-distill LoRAs (4 steps)",
         [("diffusion_models", high), ("diffusion_models", low), ("vae", VAE21), ("text_encoders", TE),
          ("loras", DISTILL_22_HIGH), ("loras", DISTILL_22_LOW)], REPACK_22,
         DISTILL_NOTE.format(sigmas=LIGHTNING_SIGMAS, lora="Each expert gets its own LoRA (the other's strength is "
                             "0): two steps on the high-noise expert, two on the low-noise one (switch at t = 875)."))
    m, v, t = loaders(g, high, low=low, what="Wan2.2 T2V A14B experts (high + low noise)")
    l1 = g.add("WanCoreLoraStack", {"lora_name": DISTILL_22_HIGH, "strength": 1.0, "strength_low_noise": 0.0,
                                    "mode": "runtime"}, title="Step-distill LoRA for the high-noise expert")
    l2 = g.add("WanCoreLoraStack", {"lora_name": DISTILL_22_LOW, "strength": 0.0, "strength_low_noise": 1.0,
                                    "mode": "runtime"}, {"lora_stack": (l1, 0)},
               title="Step-distill LoRA for the low-noise expert")
    ml = g.add("WanCoreApplyLoraStack", {}, {"model": (m, 0), "lora_stack": (l2, 0)},
               title="Apply the step-distill LoRAs")
    te = text(g, t, ml, "A hot-air balloon floats over a valley of lavender fields at sunrise.")
    c = empty_latent(g, v, 1280, 720)
    sigmas = g.add("WanCoreSigmas", {"sigmas": LIGHTNING_SIGMAS}, title="Distilled sigma schedule (4 steps)")
    finish(g, ml, v, te, c, distilled_sampler(boundary=0.875), 16.0, "a14b_t2v_distill", sigmas=sigmas,
           sampler_title="Sample video latent (2 + 2 distilled steps, high then low noise)")
    return g.build("Wan2.2 A14B T2V distilled (4 steps)")


def t2v_long_context() -> dict:
    model = "wan2.1_t2v_1.3B_bf16.safetensors"
    g = GraphBuilder()
    note(g, "Wan2.1 T2V 1.3B: 241 frames in context windows", [("diffusion_models", model), ("vae", VAE21),
                                                              ("text_encoders", TE)], REPACK_21,
         "241 frames = 61 latent frames, sampled in windows of 21 latent frames (81 video frames, the trained "
         "length) that overlap by 6 and shift between steps; their results are blended every step.")
    m, v, t = loaders(g, model, what="Wan2.1 T2V 1.3B DiT")
    te = text(g, t, m, "A drone flies along a winding coastal road at golden hour, waves below, one continuous shot.")
    c = empty_latent(g, v, 832, 480, 241, title="Empty video latent (241 frames)")
    w = g.add("WanCoreContextWindows", {"context_length": 21, "context_overlap": 6, "schedule": "uniform",
                                        "blend": "linear", "positions": "real", "image": "first",
                                        "freenoise": True}, title="Context windows (21 latent frames, overlap 6)")
    finish(g, m, v, te, c, sampler(50, 5.0, 5.0), 16.0, "t2v_long_context", extra={"context_windows": (w, 0)},
           sampler_title="Sample video latent (window by window)")
    return g.build("Wan2.1 T2V long video (context windows)")


def fun_camera_orbit() -> dict:
    model = "wan2.1_fun_camera_v1.1_1.3B_bf16.safetensors"
    g = GraphBuilder()
    note(g, "Wan2.1 Fun Camera V1.1 1.3B: orbit", [("diffusion_models", model), ("vae", VAE21), ("text_encoders", TE),
                                                   ("clip_vision", CLIP)], REPACK_21,
         "Put start.png into ComfyUI's input folder. Wan Camera Trajectory picks the move (or a CameraCtrl pose "
         "file); Wan Camera Preview draws it.")
    m, v, t = loaders(g, model, what="Wan2.1 Fun Camera 1.3B DiT")
    img, ce = start_image_with_clip(g)
    cam = g.add("WanCoreCameraTrajectory", {"preset": "orbit_left", "speed": 1.0, "length": 81},
                title="Camera move (orbit left)")
    pv = g.add("WanCoreCameraPreview", {"width": 512, "height": 256}, {"camera": (cam, 0)},
               title="Draw the camera path")
    g.add("PreviewImage", {}, {"images": (pv, 0)}, title="Camera path preview")
    te = text(g, t, m, "The camera circles a stone fountain in a sunny courtyard, water sparkling.")
    c = g.add("WanCoreFunCameraToVideo", {"width": 832, "height": 480, "length": 81},
              {"vae": (v, 0), "camera": (cam, 0), "start_image": (img, 0), "clip_embeds": (ce, 0), "model": (m, 0)},
              title="Start image + camera move to video latent")
    finish(g, m, v, te, c, sampler(50, 5.0, 5.0), 16.0, "fun_camera_orbit")
    return g.build("Wan2.1 Fun Camera orbit")


def all_workflows() -> dict[str, dict]:
    return {name: add_pack_and_model_hints(workflow) for name, workflow in _graphs().items()}


def _graphs() -> dict[str, dict]:
    return {
        "wan21_t2v_1.3b": t2v("t2v_1.3b", "wan2.1_t2v_1.3B_bf16.safetensors", 832, 480, sampler(50, 5.0, 5.0),
                              "Wan2.1 T2V 1.3B"),
        "wan21_t2v_14b": t2v("t2v_14b", "wan2.1_t2v_14B_bf16.safetensors", 1280, 720, sampler(50, 5.0, 5.0),
                             "Wan2.1 T2V 14B"),
        "wan21_i2v_480p": i2v_480p(),
        "wan21_flf2v_720p": flf2v(),
        "wan21_vace_canny": vace_canny(),
        "wan21_fun_control": fun_control(),
        "wan21_t2v_lora_stack": lora_stack(),
        "wan22_a14b_t2v": a14b_t2v(),
        "wan22_a14b_i2v": a14b_i2v(),
        "wan22_ti2v_5b": ti2v_5b(),
        "wan21_t2v_14b_distill": t2v_14b_distill(),
        "wan22_a14b_t2v_distill": a14b_t2v_distill(),
        "wan21_t2v_long_context": t2v_long_context(),
        "wan21_fun_camera_orbit": fun_camera_orbit(),
    }


def main() -> None:
    API_DIR.mkdir(parents=True, exist_ok=True)
    for name, workflow in all_workflows().items():
        dump_json(workflow, WORKFLOWS / f"{name}.json")
        dump_json(ui_to_api(workflow), API_DIR / f"{name}.json")


if __name__ == "__main__":
    main()
