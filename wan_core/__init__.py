"""wan_core: a self-contained PyTorch implementation of Alibaba's Wan2.1 / Wan2.2 video models.

Imports nothing from ComfyUI. The public entry points are loaded lazily so that
``import wan_core`` stays cheap (ComfyUI imports every node pack at start-up).

    dit  = wan_core.load_dit(path_or_paths_or_state_dict, device=None, dtype=None)
    vae  = wan_core.load_vae(path_or_state_dict, device=None, dtype=None)
    te   = wan_core.load_text_encoder(path, tokenizer=None, device=None, dtype=None)
    clip = wan_core.load_clip_vision(path)
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import WanError

__version__ = "0.1.0"

_LAZY = {
    "load_dit": (".dit.loader", "load_dit"),
    "load_vae": (".vae.loader", "load_vae"),
    "load_text_encoder": (".text.loader", "load_text_encoder"),
    "load_clip_vision": (".vision.loader", "load_clip_vision"),
    "WanPipeline": (".pipeline", "WanPipeline"),
}

__all__ = ["WanError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module, __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wan_core' has no attribute {name!r}")
