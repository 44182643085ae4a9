"""wan_core: a self-contained PyTorch implementation of Alibaba's Wan2.1 / Wan2.2 video models.

Imports nothing from ComfyUI. The public entry points are loaded lazily so that
``import wan_core`` stays cheap (ComfyUI imports every node pack at start-up).

    dit  = wan_core.load_dit(path_or_paths_or_state_dict, device=None, dtype=None)
    vae  = wan_core.load_vae(path_or_state_dict, device=None, dtype=None)
    te   = wan_core.load_text_encoder(path, tokenizer=None, device=None, dtype=None)
    clip = wan_core.load_clip_vision(path)
"""

from __future__ import annotations

from .errors import WanError
from .lazy import lazy_attributes

__version__ = "0.1.0"

_LAZY = {
    "load_dit": (".dit.loader", "load_dit"),
    "load_vae": (".vae.loader", "load_vae"),
    "load_text_encoder": (".text.loader", "load_text_encoder"),
    "load_clip_vision": (".vision.loader", "load_clip_vision"),
    "WanPipeline": (".pipeline", "WanPipeline"),
}

__all__ = ["WanError", "__version__", *_LAZY]

__getattr__ = lazy_attributes(__name__, _LAZY)
