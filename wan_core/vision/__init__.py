"""wan_core.vision: the CLIP-H vision encoder (image conditioning for I2V / FLF2V / Fun / Animate).

``load_clip_vision`` is imported lazily so that ``import wan_core.vision`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_clip_vision"]


def __getattr__(name: str) -> Any:
    if name == "load_clip_vision":
        from .loader import load_clip_vision

        return load_clip_vision
    raise AttributeError(f"module 'wan_core.vision' has no attribute {name!r}")
