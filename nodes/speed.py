"""Fewer DiT calls: a settings node per step-caching method, CFG options and a custom sigma list.

Each node only builds a small settings object (wan_core.sampling.cache / guidance); the sampler's
optional ``cache``, ``guidance`` and ``sigmas`` inputs take them.
"""

from __future__ import annotations

from wan_core.sampling.cache import (
    EasyCacheSettings,
    MagCacheSettings,
    TeaCacheSettings,
    load_calibration,
    magcache_curve_names,
    teacache_names,
)
from wan_core.sampling.guidance import GuidanceOptions
from wan_core.sampling.schedules import parse_sigmas

from . import comfy_bridge as bridge
from .common import combo, widget
from .types import CATEGORY, WAN_CACHE, WAN_GUIDANCE, WAN_SIGMAS

_CAT = f"{CATEGORY}/speed"
CALIBRATION_FOLDER = "wan_magcache"  # under ComfyUI's output folder
LIGHTNING_SIGMAS = "1.0, 0.9375, 0.833333, 0.625, 0.0"  # 4 steps, shift 5 (lightx2v / Wan2.2-Lightning)


def _threshold(tooltip: str, default: float, maximum: float = 3.0) -> tuple:
    return widget("FLOAT", tooltip, default=default, min=0.0, max=maximum, step=0.01)


def _fraction(tooltip: str, default: float) -> tuple:
    return widget("FLOAT", tooltip, default=default, min=0.0, max=1.0, step=0.01)


class WanEasyCache:
    DESCRIPTION = (
        "EasyCache for the Wan Sampler's cache input: reuses the DiT's last transformation while the "
        "estimated change stays small (no calibration). Decides exactly as ComfyUI's native EasyCache node "
        "('comfyui') or as the authors' code ('paper'). Threshold 0 = off."
    )
    CATEGORY = _CAT
    FUNCTION = "build"
    RETURN_TYPES = (WAN_CACHE,)
    RETURN_NAMES = ("cache",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "reuse_threshold": _threshold("Reuse while the accumulated change stays below this (0 = off).", 0.2),
                "start_percent": _fraction("Share of the schedule before reuse may start.", 0.15),
                "end_percent": _fraction("From this share of the schedule on every step runs the DiT.", 0.95),
                "mode": combo(["comfyui", "paper"], "comfyui = ComfyUI's EasyCache node; paper = the authors' code."),
            }
        }

    def build(self, reuse_threshold, start_percent, end_percent, mode):
        return (EasyCacheSettings(reuse_threshold, start_percent, end_percent, mode),)


class WanMagCache:
    DESCRIPTION = (
        "MagCache for the Wan Sampler's cache input: skips the DiT blocks while the accumulated "
        "magnitude-ratio error is small, using a published per-model curve ('auto' picks it from the model), "
        "a calibration file, or 'calibrate' (one full run records this model's curve into the file)."
    )
    CATEGORY = _CAT
    FUNCTION = "build"
    RETURN_TYPES = (WAN_CACHE,)
    RETURN_NAMES = ("cache",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "curve": combo(
                    ["auto", *magcache_curve_names(), "file", "calibrate"],
                    "Magnitude-ratio curve: auto = the published one of the model; file = calibration_file; "
                    "calibrate = run every step and save this model's curve to calibration_file.",
                ),
                "threshold": _threshold("Skip while the accumulated error stays below this (0 = off).", 0.12, 2.0),
                "K": widget("INT", "At most this many skipped steps in a row.", default=2, min=0, max=50),
                "retention": _fraction("Share of the first DiT calls that always run.", 0.2),
                "calibration_file": widget(
                    "STRING",
                    f"JSON file in ComfyUI's output/{CALIBRATION_FOLDER} folder (written by calibrate, read by file).",
                    default="my_model.json",
                ),
            }
        }

    @classmethod
    def IS_CHANGED(cls, curve, calibration_file, **_):
        """A calibration file read by 'file' may be rewritten between runs: run again when it changes."""
        path = bridge.output_dir() / CALIBRATION_FOLDER / calibration_file
        return str(path.stat().st_mtime) if curve == "file" and path.is_file() else curve

    def build(self, curve, threshold, K, retention, calibration_file):
        path = bridge.output_dir() / CALIBRATION_FOLDER / calibration_file
        if curve == "calibrate":
            return (MagCacheSettings(threshold, K, retention, calibrate=str(path)),)
        if curve == "file":
            return (MagCacheSettings(threshold, K, retention, ratios=load_calibration(path)),)
        return (MagCacheSettings(threshold, K, retention, curve=curve),)


class WanTeaCache:
    DESCRIPTION = (
        "TeaCache for the Wan Sampler's cache input: skips the DiT blocks while the rescaled change of the "
        "timestep embedding is small, with the published Wan2.1 coefficients (T2V 1.3B/14B, I2V 480p/720p)."
    )
    CATEGORY = _CAT
    FUNCTION = "build"
    RETURN_TYPES = (WAN_CACHE,)
    RETURN_NAMES = ("cache",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "threshold": _threshold("Skip while the accumulated distance stays below this (0 = off).", 0.2),
                "embedding": combo(
                    ["e0", "e"], "e0 = the authors' use_ret_steps (recommended); e = the plain time embedding."
                ),
                "coefficients": combo(["auto", *teacache_names()], "Published coefficients; auto = from the model."),
            }
        }

    def build(self, threshold, embedding, coefficients):
        return (TeaCacheSettings(threshold, embedding, coefficients),)


class WanCFGOptions:
    DESCRIPTION = (
        "Opt-in CFG savings for the Wan Sampler's guidance input: CFG-Zero* (optimised scale; zero velocity "
        "for the first steps, no DiT call) and guidance only in a step range (one forward outside it)."
    )
    CATEGORY = _CAT
    FUNCTION = "build"
    RETURN_TYPES = (WAN_GUIDANCE,)
    RETURN_NAMES = ("guidance",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "cfg_zero_star": widget("BOOLEAN", "CFG-Zero*: scale the negative branch optimally.", default=False),
                "zero_init_steps": widget(
                    "INT", "CFG-Zero* zero-init: the first N steps use a zero velocity (0 = off).", default=0, min=0
                ),
                "cfg_start": _fraction("Guidance from this share of the steps on (before it: one forward).", 0.0),
                "cfg_end": _fraction("Guidance until this share of the steps (after it: one forward).", 1.0),
            }
        }

    def build(self, cfg_zero_star, zero_init_steps, cfg_start, cfg_end):
        return (GuidanceOptions(cfg_zero_star, zero_init_steps, cfg_start, cfg_end),)


class WanSigmas:
    DESCRIPTION = (
        "A custom sigma list for the Wan Sampler's sigmas input (it then ignores steps, shift and denoise), e.g. "
        "the 4-step lists of step-distilled LoRAs: shift 5 = 1.0, 0.9375, 0.833333, 0.625, 0.0; "
        "shift 8 = 1.0, 0.96, 0.888889, 0.727273, 0.0."
    )
    CATEGORY = _CAT
    FUNCTION = "build"
    RETURN_TYPES = (WAN_SIGMAS,)
    RETURN_NAMES = ("sigmas",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "sigmas": widget(
                    "STRING",
                    "Sigmas from 1 down to 0, separated by commas (N steps = N+1 values).",
                    default=LIGHTNING_SIGMAS,
                ),
            }
        }

    def build(self, sigmas):
        return (parse_sigmas(sigmas),)


NODE_CLASSES = {
    "WanCoreEasyCache": (WanEasyCache, "Wan EasyCache"),
    "WanCoreMagCache": (WanMagCache, "Wan MagCache"),
    "WanCoreTeaCache": (WanTeaCache, "Wan TeaCache"),
    "WanCoreCFGOptions": (WanCFGOptions, "Wan CFG Options"),
    "WanCoreSigmas": (WanSigmas, "Wan Custom Sigmas"),
}
