"""Node layer: registration contract, ComfyUI type conversions, the bridge's standalone fallbacks,
and each node called with fake inputs (fast; tiny-model end-to-end runs are in test_workflows.py)."""

from __future__ import annotations

import ast
import enum
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import ROOT, rel_err

import nodes
from nodes import comfy_bridge as bridge
from nodes import convert
from nodes.latent_stats import latent_stats
from nodes.types import TextEmbeds, WanModelHandle
from wan_core.errors import InputError, WanInterrupted

EXPECTED_MODULES = {
    "loaders",
    "text",
    "latents",
    "control",
    "camera",
    "lora",
    "sampling",
    "longvideo",
    "speed",
    "video",
}


# --------------------------------------------------------------------------- registration


def test_every_node_module_imports_and_registers():
    modules = {cls.__module__.rsplit(".", 1)[-1] for cls in nodes.NODE_CLASS_MAPPINGS.values()}
    assert modules == EXPECTED_MODULES, f"missing node modules: {EXPECTED_MODULES - modules}"
    assert set(nodes.NODE_CLASS_MAPPINGS) == set(nodes.NODE_DISPLAY_NAME_MAPPINGS)
    assert len(nodes.NODE_CLASS_MAPPINGS) >= 25


@pytest.mark.parametrize("node_id", sorted(nodes.NODE_CLASS_MAPPINGS))
def test_node_class_contract(node_id):
    cls = nodes.NODE_CLASS_MAPPINGS[node_id]
    assert node_id.startswith("WanCore")
    assert cls.CATEGORY.startswith("Wan video/")
    assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 20
    assert callable(getattr(cls, cls.FUNCTION))
    assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
    if not cls.RETURN_TYPES:
        assert cls.OUTPUT_NODE is True
    types = cls.INPUT_TYPES()
    assert set(types) <= {"required", "optional", "hidden"}
    for section in ("required", "optional"):
        for name, spec in types.get(section, {}).items():
            assert isinstance(spec, tuple) and len(spec) == 2, (node_id, name)
            tooltip = spec[1].get("tooltip", "")
            assert isinstance(tooltip, str) and len(tooltip) > 8, f"{node_id}.{name} has no tooltip"


def test_node_info_is_json_serialisable_like_object_info():
    import json

    for node_id, cls in nodes.NODE_CLASS_MAPPINGS.items():
        info = {
            "input": cls.INPUT_TYPES(),
            "output": list(cls.RETURN_TYPES),
            "output_name": list(cls.RETURN_NAMES),
            "category": cls.CATEGORY,
            "description": cls.DESCRIPTION,
            "output_node": getattr(cls, "OUTPUT_NODE", False),
        }
        assert json.loads(json.dumps(info))["category"] == cls.CATEGORY, node_id


def test_only_the_bridge_imports_comfyui():
    comfy_modules = re.compile(r"^(comfy|comfy_extras|folder_paths|server|latent_preview|execution)(\.|$)")
    offenders = []
    for path in sorted((ROOT / "nodes").glob("*.py")):
        if path.name == "comfy_bridge.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if comfy_modules.match(n)]
    assert not offenders, offenders


def test_bridge_runs_standalone():
    assert bridge.IN_COMFYUI is False
    assert bridge.compute_device().type in ("cpu", "cuda", "mps", "xpu")


# --------------------------------------------------------------------------- conversions


@pytest.mark.parametrize("channels", [16, 48])
def test_latent_conversion_round_trip_and_raw_convention(channels):
    z = torch.randn(2, channels, 3, 4, 6)
    raw = convert.latent_to_comfy(z)["samples"]
    mean, std = latent_stats(channels)
    # raw = z * std + mean per channel (computed here channel by channel, independently)
    for c in (0, channels // 2, channels - 1):
        assert torch.allclose(raw[:, c], z[:, c] * std[c] + mean[c], atol=1e-6)
    back = convert.latent_from_comfy({"samples": raw})
    assert rel_err(back, z) < 1e-6


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_latent_stats_match_the_vae_normalisation(version):
    import wan_core
    from wan_core.vae.tiny import tiny_vae_state_dict

    vae = wan_core.load_vae(tiny_vae_state_dict(version), device="cpu", dtype="fp32")
    raw = torch.randn(1, vae.config.z_dim, 2, 3, 3) * 2
    assert rel_err(convert.latent_from_comfy({"samples": raw}), vae.normalize(raw)) < 1e-6
    z = torch.randn(1, vae.config.z_dim, 2, 3, 3)
    assert rel_err(convert.latent_to_comfy(z)["samples"], vae.denormalize(z)) < 1e-6


def test_latent_stats_are_wan_cores_single_copy_and_the_published_values():
    """The node layer keeps no table of its own: it reads wan_core's (the VAE's normalisation), whose Wan2.1
    values are diffusers' AutoencoderKLWan defaults and whose Wan2.2 spots are WAN_SPEC 4.3's."""
    import inspect

    from diffusers import AutoencoderKLWan

    from nodes import latent_stats as module
    from wan_core.errors import InputError

    assert not [n for n, v in vars(module).items() if isinstance(v, tuple) and len(v) in (16, 48)]
    defaults = inspect.signature(AutoencoderKLWan.__init__).parameters
    mean, std = latent_stats(16)
    assert mean.tolist() == pytest.approx(defaults["latents_mean"].default, abs=1e-6)
    assert std.tolist() == pytest.approx(defaults["latents_std"].default, abs=1e-6)
    mean, std = latent_stats(48)
    assert mean.dtype == torch.float32 and mean.shape == std.shape == (48,)
    assert (mean[0].item(), mean[19].item(), std[39].item(), std[47].item()) == pytest.approx(
        (-0.2289, 0.5109, 1.6887, 0.7744), abs=1e-6
    )
    with pytest.raises(InputError, match="16 .* or 48"):
        latent_stats(32)


def test_latent_from_comfy_rejects_image_latents():
    with pytest.raises(InputError, match="video LATENT"):
        convert.latent_from_comfy({"samples": torch.zeros(1, 4, 8, 8)})
    with pytest.raises(InputError, match="16 .* or 48"):
        convert.latent_from_comfy({"samples": torch.zeros(1, 4, 1, 8, 8)})


def test_image_video_round_trip():
    frames = torch.rand(5, 8, 12, 3)
    video = convert.video_from_image(frames)
    assert video.shape == (1, 3, 5, 8, 12)
    assert video.min() >= -1 and video.max() <= 1
    assert torch.allclose(video[0, 1, 2], frames[2, :, :, 1] * 2 - 1)
    back = convert.image_from_video(video)
    assert back.shape == frames.shape and rel_err(back, frames) < 1e-6
    two = convert.image_from_video(torch.cat([video, -video]))
    assert two.shape == (10, 8, 12, 3)


# --------------------------------------------------------------------------- bridge fallbacks


def test_model_folders_from_env_and_extra_paths(tmp_path, monkeypatch):
    (tmp_path / "root" / "vae").mkdir(parents=True)
    (tmp_path / "root" / "vae" / "a.safetensors").write_bytes(b"x")
    (tmp_path / "root" / "vae" / "notes.txt").write_text("x")
    (tmp_path / "extra" / "sub").mkdir(parents=True)
    (tmp_path / "extra" / "sub" / "b.pth").write_bytes(b"x")
    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(tmp_path / "root"))
    monkeypatch.setitem(bridge.EXTRA_MODEL_PATHS, "vae", [str(tmp_path / "extra")])
    assert bridge.model_files("vae") == ["a.safetensors", "sub/b.pth"]
    assert Path(bridge.model_path("vae", "sub/b.pth")) == tmp_path / "extra" / "sub" / "b.pth"
    with pytest.raises(InputError, match=r"missing\.safetensors.*models/vae"):
        bridge.model_path("vae", "missing.safetensors")


def test_save_path_counts_up(tmp_path, monkeypatch):
    monkeypatch.setenv("WAN_CORE_OUTPUT_DIR", str(tmp_path))
    folder, stem, counter, sub = bridge.save_path("wan/clip", 64, 64)
    assert (folder, stem, counter, sub) == (tmp_path / "wan", "clip", 1, "wan")
    (folder / "clip_00001_.mp4").write_bytes(b"x")
    assert bridge.save_path("wan/clip", 64, 64)[2] == 2


def test_hooks_report_progress_and_interrupts_pass_through():
    hooks, close = bridge.make_hooks(3)
    for i in range(1, 4):
        hooks.step(i, 3, None)  # no interrupt standalone
    close()
    with pytest.raises(WanInterrupted):
        with bridge.comfy_errors():
            raise WanInterrupted("stop")


# --------------------------------------------------------------------------- fakes


@dataclass(frozen=True)
class FakeConfig:
    family: str = "wan2.1"
    task: str = "i2v"
    variant: str = "wan2.1-i2v"
    extra_channels: int = 20
    size_label: str | None = None


class FakeDiT:
    def __init__(self, **cfg):
        self.config = FakeConfig(**cfg)


class FakeTextEncoder:
    device = torch.device("cpu")

    def __init__(self):
        self.calls = []

    def encode(self, prompts, host=None):
        self.calls.append(list(prompts))
        return [torch.full((len(p) % 7 + 1, 4), float(i)) for i, p in enumerate(prompts)]


def test_text_encode_uses_the_tasks_official_negative_when_empty():
    from wan_core.configs import default_negative_prompt

    node = nodes.NODE_CLASS_MAPPINGS["WanCoreTextEncode"]()
    te = FakeTextEncoder()
    model = WanModelHandle(high=FakeDiT(family="wan2.1", task="i2v"))
    (embeds,) = node.encode(te, "a cat", "  ", model=model)
    assert te.calls == [["a cat", default_negative_prompt("wan2.1", "i2v")]]
    assert embeds.negative_text == default_negative_prompt("wan2.1", "i2v")
    assert len(embeds.positive) == 1 and embeds.positive[0].shape[1] == 4
    (embeds,) = node.encode(te, "a cat", "blurry")
    assert te.calls[-1] == ["a cat", "blurry"]


def test_clip_vision_encode_concatenates_start_and_end_tokens():
    class FakeClip:
        model = None  # the module ComfyUI's manager would load (not used standalone)

        def encode(self, images, crop="none"):
            self.crop = crop
            return images.mean(dim=(1, 2))[:, None, :].repeat(1, 5, 1)  # [N, 5, 3]

    clip = FakeClip()
    node = nodes.NODE_CLASS_MAPPINGS["WanCoreCLIPVisionEncode"]()
    start, end = torch.zeros(2, 8, 8, 3), torch.ones(1, 8, 8, 3)
    (single,) = node.encode(clip, start, "center")
    assert single.shape == (1, 5, 3) and clip.crop == "center"
    (pair,) = node.encode(clip, start, "none", end_image=end)
    assert pair.shape == (1, 10, 3)
    assert pair[0, :5].abs().sum() == 0 and torch.all(pair[0, 5:] == 1)


def test_lora_stack_chains_and_parses_block_filters(tmp_path, monkeypatch):
    from nodes.lora import parse_blocks

    (tmp_path / "loras").mkdir()
    (tmp_path / "loras" / "a.safetensors").write_bytes(b"x")
    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(tmp_path))
    stack = nodes.NODE_CLASS_MAPPINGS["WanCoreLoraStack"]()
    (one,) = stack.stack("a.safetensors", 0.5, -1.0, "runtime", "")
    (two,) = stack.stack("a.safetensors", 1.0, 0.25, "merge", "0-2, 5", lora_stack=one)
    assert len(two) == 2 and two[0].strength_low is None and two[1].strength_low == 0.25
    assert two[1].blocks == (0, 1, 2, 5) and two[1].mode == "merge"
    assert parse_blocks("self_attn") == "self_attn" and parse_blocks("") is None
    with pytest.raises(InputError, match="N-M"):
        parse_blocks("1-")
    apply = nodes.NODE_CLASS_MAPPINGS["WanCoreApplyLoraStack"]()
    base = WanModelHandle(high=FakeDiT())
    out = apply.apply(base, two)
    assert out["result"][0].loras == two and base.loras == ()  # the loaded model handle is untouched
    assert out["ui"]["text"] == ["2 LoRA(s)"]


def _fake_sampler(monkeypatch, result_channels=16, fail=None):
    import nodes.sampling as ns
    import wan_core.modelset as modelset

    calls = {"apply": [], "remove": []}

    def fake_sample(target, positive, negative, cond, settings, hooks=None, device=None, host=None):
        calls["sample"] = (target, positive, negative, cond, settings)
        hooks.step(1, settings.steps, None)
        if fail is not None:
            raise fail
        return torch.ones(settings.batch_size, result_channels, 2, 4, 4)

    monkeypatch.setattr(ns, "sample", fake_sample)
    monkeypatch.setattr(ns, "validate_conditioning", lambda cond, cfg: calls.setdefault("validated", cfg))
    monkeypatch.setattr(
        modelset,
        "apply_lora_stack",
        lambda dit, specs, expert=None, keep_original=False: (
            calls["apply"].append((dit, expert, keep_original)) or [f"report-{expert}"]
        ),
    )
    monkeypatch.setattr(modelset, "remove_lora", lambda dit, report: calls["remove"].append((dit, report)))
    return calls


def _sampler_args(model, **over):
    from wan_core.conditioning import Conditioning

    args = dict(
        model=model,
        text_embeds=TextEmbeds([torch.zeros(3, 4)], [torch.zeros(2, 4)]),
        conditioning=Conditioning(latent_shape=(16, 2, 4, 4)),
        seed=7,
        steps=3,
        cfg=4.0,
        cfg_low_noise=-1.0,
        shift=5.0,
        solver="unipc",
        denoise=1.0,
        moe_boundary=0.0,
        batch_size=2,
    )
    args.update(over)
    return args


def test_sampler_single_model_returns_a_raw_latent(monkeypatch):
    calls = _fake_sampler(monkeypatch)
    node = nodes.NODE_CLASS_MAPPINGS["WanCoreSampler"]()
    dit = FakeDiT(task="t2v")
    out = node.run(**_sampler_args(WanModelHandle(high=dit)))
    (latent,) = out["result"]
    assert out["ui"] == {"wan_dit_steps": [""]}  # the fake sampler sent no step report
    target, positive, _neg, _cond, settings = calls["sample"]
    assert target is dit and positive[0].shape == (3, 4)
    assert (settings.steps, settings.seed, settings.cfg, settings.shift, settings.batch_size) == (3, 7, 4.0, 5.0, 2)
    mean, std = latent_stats(16)
    assert latent["samples"].shape == (2, 16, 2, 4, 4)
    assert torch.allclose(latent["samples"][0, :, 0, 0, 0], mean + std)  # normalised ones -> raw
    assert calls["apply"] == [] and calls["validated"] is dit.config


def test_sampler_moe_experts_and_loras_removed_even_on_error(monkeypatch):
    from wan_core.sampling import Experts

    calls = _fake_sampler(monkeypatch, fail=WanInterrupted("stop"))
    node = nodes.NODE_CLASS_MAPPINGS["WanCoreSampler"]()
    high, low = FakeDiT(task="t2v"), FakeDiT(task="t2v")
    model = WanModelHandle(high=high, low=low, loras=("spec",))
    with pytest.raises(WanInterrupted):
        node.run(**_sampler_args(model, cfg=4.0, cfg_low_noise=3.0, moe_boundary=0.875))
    target, settings = calls["sample"][0], calls["sample"][4]
    assert isinstance(target, Experts) and target.high is high and target.low is low
    assert target.boundary == pytest.approx(0.875) and settings.cfg == (3.0, 4.0)  # (low_noise, high_noise)
    assert calls["apply"] == [(high, "high", True), (low, "low", True)]
    assert calls["remove"] == [(low, "report-low"), (high, "report-high")]


@pytest.mark.parametrize(
    "task, size, badge",
    [("t2v", "14b", "wan2.2-t2v-a14b"), ("i2v", "14b", "wan2.2-i2v-a14b"), ("t2v", None, "wan2.2-t2v")],
)
def test_loader_badge_names_the_wan22_expert_pair(task, size, badge):
    """Wan2.2 T2V-A14B experts are key-identical to Wan2.1 T2V-14B (the DiT reports wan2.1-t2v-14b): with a
    low-noise expert the badge names the Wan2.2 pair; a single DiT keeps its detected variant."""
    from wan_core.dit.config import released_config

    high = FakeDiT(task=task, variant=f"wan2.1-{task}-14b", size_label=size)
    assert WanModelHandle(high=high).describe() == f"wan2.1-{task}-14b"
    pair = WanModelHandle(high=high, low=FakeDiT(task=task, variant=f"wan2.1-{task}-14b", size_label=size))
    assert pair.describe() == f"{badge} (high + low noise experts)"
    real = released_config("wan2.1-t2v-14b")  # what the loader detects for a released T2V-A14B expert file
    assert (
        WanModelHandle(
            high=FakeDiT(task=real.task, size_label=real.size_label),
            low=FakeDiT(task=real.task, size_label=real.size_label),
        )
        .describe()
        .startswith("wan2.2-t2v-a14b ")
    )


def test_sampler_init_latent_for_partial_denoise(monkeypatch):
    calls = _fake_sampler(monkeypatch)
    node = nodes.NODE_CLASS_MAPPINGS["WanCoreSampler"]()
    raw = convert.latent_to_comfy(torch.full((1, 16, 2, 4, 4), 0.5))
    node.run(**_sampler_args(WanModelHandle(high=FakeDiT()), denoise=0.6, latent=raw))
    cond = calls["sample"][3]
    assert calls["sample"][4].denoise == 0.6
    assert torch.allclose(cond.init_latent, torch.full((1, 16, 2, 4, 4), 0.5), atol=1e-5)


def test_save_video_writes_mp4_with_metadata_and_ui(tmp_path, monkeypatch):
    from wan_core.video_io import read_metadata, read_video

    monkeypatch.setenv("WAN_CORE_OUTPUT_DIR", str(tmp_path))
    node = nodes.NODE_CLASS_MAPPINGS["WanCoreSaveVideo"]()
    frames = torch.rand(5, 32, 48, 3)
    out = node.save(
        frames,
        16.0,
        "wan/test",
        "mp4",
        17,
        prompt={"1": {"class_type": "X"}},
        extra_pnginfo={"workflow": {"nodes": []}},
    )
    (image,) = out["ui"]["images"]
    assert out["ui"]["animated"] == (True,) and image["type"] == "output" and image["subfolder"] == "wan"
    path = tmp_path / "wan" / image["filename"]
    video, fps = read_video(path)
    assert video.shape == (5, 32, 48, 3) and fps == pytest.approx(16.0)
    meta = read_metadata(path)
    assert meta["prompt"] == {"1": {"class_type": "X"}} and meta["workflow"] == {"nodes": []}
    webp = node.save(frames, 8.0, "wan/test", "webp", 17)["ui"]["images"][0]
    assert webp["filename"].endswith(".webp") and read_video(tmp_path / "wan" / webp["filename"])[0].shape[0] == 5


def test_load_video_reads_from_the_input_folder(tmp_path, monkeypatch):
    from wan_core.video_io import write_video

    monkeypatch.setenv("WAN_CORE_INPUT_DIR", str(tmp_path))
    write_video(torch.rand(9, 16, 16, 3), tmp_path / "clip.mp4", fps=12.0)
    cls = nodes.NODE_CLASS_MAPPINGS["WanCoreLoadVideo"]
    assert "clip.mp4" in cls.INPUT_TYPES()["required"]["video"][0]
    frames, fps, count = cls().load("clip.mp4", 0)
    assert frames.shape == (9, 16, 16, 3) and fps == pytest.approx(12.0) and count == 9
    assert cls().load("clip.mp4", 4)[2] == 4
    assert "not in the input folder" in cls.VALIDATE_INPUTS("nope.mp4", 0)


def test_load_video_offers_the_editors_upload_button():
    """ComfyUI's LoadVideo flags its combo video_upload (io.UploadType.video): the editor then adds an upload
    button (mp4/webm) and a video preview; the flag must sit on a required combo to be seen."""
    spec = nodes.NODE_CLASS_MAPPINGS["WanCoreLoadVideo"].INPUT_TYPES()["required"]["video"]
    assert isinstance(spec[0], list) and spec[1].get("video_upload") is True


def test_control_nodes_keep_the_image_layout():
    frames = torch.zeros(5, 40, 60, 3)
    frames[:, 10:30, 20:40] = 1.0
    cls = nodes.NODE_CLASS_MAPPINGS
    (edges,) = cls["WanCoreCannyEdges"]().process(frames=frames, low_threshold=50, high_threshold=150)
    assert edges.shape == frames.shape and edges.max() == 1.0 and edges.mean() < 0.3
    (soft,) = cls["WanCoreSoftEdges"]().process(frames=frames, method="sobel")
    assert soft.shape == frames.shape
    (fit,) = cls["WanCoreFitFrames"]().process(frames=frames, width=32, height=32, mode="crop")
    assert fit.shape == (5, 32, 32, 3)
    (res,) = cls["WanCoreResampleFrames"]().process(
        frames=frames, source_fps=16.0, target_fps=8.0, length=9, use_length=True
    )
    assert res.shape[0] == 9
    (depth,) = cls["WanCoreDepthPassthrough"]().process(frames=frames * 0.5 + 0.25)
    assert depth.shape == frames.shape and depth.max() == pytest.approx(1.0)


def test_empty_latent_is_vae_aware():
    class FakeVAE:
        def __init__(self, z, stride):
            self.config = type("C", (), {"z_dim": z, "spatial_stride": stride})()

    node = nodes.NODE_CLASS_MAPPINGS["WanCoreEmptyVideoLatent"]()
    cond, latent = node.build(FakeVAE(16, 8), 64, 48, 9)
    assert cond.latent_shape == (16, 3, 6, 8) and latent["samples"].shape == (1, 16, 3, 6, 8)
    cond, _ = node.build(FakeVAE(48, 16), 64, 32, 5)
    assert cond.latent_shape == (48, 2, 2, 4)
    with pytest.raises(InputError):
        node.build(FakeVAE(16, 8), 64, 48, 8)  # not 4n+1


def test_vae_encode_decode_nodes_speak_comfyui_latents():
    """Our encode node returns the RAW mean (what native VAE Decode expects); our decode takes it back."""
    import wan_core
    from wan_core.vae.tiny import tiny_vae_state_dict

    vae = wan_core.load_vae(tiny_vae_state_dict("2.1"), device="cpu", dtype="fp32")
    frames = torch.rand(5, 16, 16, 3)
    cls = nodes.NODE_CLASS_MAPPINGS
    (latent,) = cls["WanCoreVAEEncode"]().encode(vae, frames, False, 256, 64)
    video = frames.permute(3, 0, 1, 2)[None] * 2 - 1
    with torch.inference_mode():
        z = vae.encode(video)
        expected = (vae.decode(z)[0].permute(1, 2, 3, 0) + 1) / 2
    assert latent["samples"].shape == (1, 16, 2, 2, 2)
    assert rel_err(latent["samples"], vae.denormalize(z)) < 1e-5
    (decoded,) = cls["WanCoreVAEDecode"]().decode(vae, latent, False, 256, 64)
    assert decoded.shape == (5, 16, 16, 3)
    assert rel_err(decoded, expected.clamp(0, 1)) < 1e-5
    (tiled,) = cls["WanCoreVAEDecode"]().decode(vae, latent, True, 8, 0)  # tiling options reach the VAE
    assert tiled.shape == decoded.shape and torch.isfinite(tiled).all()
    with pytest.raises(InputError, match="overlap"):
        cls["WanCoreVAEDecode"]().decode(vae, latent, True, 64, 64)


def _bridge_with_fake_comfyui(monkeypatch, tmp_path, preview="none"):
    """Load comfy_bridge under another name with stand-in ComfyUI modules in sys.modules."""
    import importlib.util
    import sys
    import types

    events = {"bar": [], "interrupted": False}

    class InterruptProcessingException(Exception):
        pass

    mm = types.ModuleType("comfy.model_management")
    mm.InterruptProcessingException = InterruptProcessingException
    mm.processing_interrupted = lambda: events["interrupted"]

    def throw():
        if events["interrupted"]:
            events["interrupted"] = False
            raise InterruptProcessingException()

    mm.throw_exception_if_processing_interrupted = throw
    mm.get_torch_device = lambda: torch.device("cpu")
    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            events["bar"].append((value, total, preview))

    utils.ProgressBar = ProgressBar
    cli_args = types.ModuleType("comfy.cli_args")

    class LatentPreviewMethod(enum.Enum):  # as ComfyUI defines it
        NoPreviews = "none"
        Auto = "auto"
        Latent2RGB = "latent2rgb"
        TAESD = "taesd"

    cli_args.LatentPreviewMethod = LatentPreviewMethod
    cli_args.args = types.SimpleNamespace(preview_method=LatentPreviewMethod(preview), preview_size=512)
    fp = types.ModuleType("folder_paths")
    fp.get_full_path = lambda folder, name: str(tmp_path / folder / name) if name == "ok.safetensors" else None
    fp.get_folder_paths = lambda folder: [str(tmp_path / folder)]
    fp.get_filename_list = lambda folder: ["ok.safetensors"]
    comfy = types.ModuleType("comfy")
    comfy.model_management, comfy.utils = mm, utils
    for name, module in {
        "comfy": comfy,
        "comfy.model_management": mm,
        "comfy.utils": utils,
        "comfy.cli_args": cli_args,
        "folder_paths": fp,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("bridge_in_fake_comfyui", ROOT / "nodes" / "comfy_bridge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, events, InterruptProcessingException


def test_bridge_inside_comfyui_uses_its_progress_bar_interrupt_and_folders(monkeypatch, tmp_path):
    fake, events, interrupt_exc = _bridge_with_fake_comfyui(monkeypatch, tmp_path, preview="latent2rgb")
    assert fake.IN_COMFYUI is True
    assert fake.model_files("vae") == ["ok.safetensors"]
    (tmp_path / "diffusion_models" / "sub").mkdir(parents=True)
    (tmp_path / "diffusion_models" / "sub" / "wan-Q4_K_M.gguf").write_bytes(b"x")  # ComfyUI's lists skip .gguf
    assert fake.model_files("diffusion_models") == ["ok.safetensors", "sub/wan-Q4_K_M.gguf"]
    assert fake.model_path("vae", "ok.safetensors").endswith("vae/ok.safetensors")
    with pytest.raises(InputError, match="not found"):
        fake.model_path("vae", "gone.safetensors")
    hooks, close = fake.make_hooks(4)
    assert hooks.want_preview  # --preview-method latent2rgb
    hooks.step(1, 4, torch.rand(6, 8, 3))
    value, total, (fmt, image, max_size) = events["bar"][-1]
    assert (value, total, fmt, image.size, max_size) == (1, 4, "JPEG", (8, 6), 512)
    events["interrupted"] = True
    with pytest.raises(interrupt_exc):
        with fake.comfy_errors():
            hooks.step(2, 4, None)  # RunHooks.check raises WanInterrupted -> ComfyUI's interrupt
    assert events["interrupted"] is False  # ComfyUI's flag was consumed
    close()


@pytest.mark.parametrize("method", ["none", "auto", "taesd"])
def test_bridge_follows_comfyui_preview_method(monkeypatch, tmp_path, method):
    """ComfyUI's --preview-method none (its default) means no previews at all, as its own samplers do."""
    fake, events, _exc = _bridge_with_fake_comfyui(monkeypatch, tmp_path, preview=method)
    hooks, close = fake.make_hooks(2)
    assert hooks.want_preview is (method != "none")
    hooks.step(1, 2, torch.rand(6, 8, 3))
    payload = events["bar"][-1][2]
    assert (payload is None) is (method == "none")
    close()
