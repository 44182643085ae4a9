"""Small helpers shared by the node modules: input declarations with tooltips, UI results."""

from __future__ import annotations

from typing import Any

from wan_core.budget import vae_run_bytes
from wan_core.vae import WanVAE

from . import comfy_bridge as bridge

NONE_CHOICE = "none"


def widget(kind: str, tooltip: str, **options: Any) -> tuple:
    """One INPUT_TYPES entry: (type, {tooltip, options...})."""
    return (kind, {"tooltip": tooltip, **options})


def socket(kind: str, tooltip: str) -> tuple:
    return (kind, {"tooltip": tooltip})


def combo(choices: list[str], tooltip: str, default: str | None = None) -> tuple:
    options: dict[str, Any] = {"tooltip": tooltip}
    if default is not None:
        options["default"] = default
    return (list(choices), options)


def model_combo(folder: str, tooltip: str, optional: bool = False) -> tuple:
    """A combo listing the files of one of ComfyUI's model folders (``none`` first when optional)."""
    files = bridge.model_files(folder)
    return combo([NONE_CHOICE, *files] if optional else files, tooltip)


def frames_widget(default: int = 81) -> tuple:
    return widget(
        "INT",
        "Number of video frames; must be 4n+1 (1, 5, 9, ..., 81). The editor snaps it.",
        default=default,
        min=1,
        max=1025,
        step=4,
    )


def size_widget(name: str, default: int, multiple: int = 16) -> tuple:
    return widget(
        "INT",
        f"Video {name} in pixels; a multiple of {multiple} "
        "(32 for TI2V-5B). The editor snaps it to the model's multiple.",
        default=default,
        min=multiple,
        max=4096,
        step=multiple,
    )


def with_ui_text(text: str, *result: Any) -> dict:
    """A node return value that also shows ``text`` on the node (variant badges, infos)."""
    return {"ui": {"text": [text]}, "result": tuple(result)}


def use_vae(vae: WanVAE, frames: int, height: int, width: int, tile: int | None = None) -> None:
    """Before a node encodes with ``vae``: ComfyUI's manager loads it for a video of that size (standalone: nothing)."""
    bridge.use_models([vae], lambda: vae_run_bytes(vae.config, frames, height, width, vae.dtype, tile=tile))


def input_file_stamp(name: str) -> float | str:
    """An IS_CHANGED value for a file in ComfyUI's input folder: its mtime ("" when absent), so an edit re-runs."""
    path = bridge.input_dir() / name
    return path.stat().st_mtime if path.is_file() else ""
