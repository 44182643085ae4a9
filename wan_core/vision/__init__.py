"""wan_core.vision: the CLIP-H vision encoder (image conditioning for I2V / FLF2V / Fun / Animate).

``load_clip_vision`` is imported lazily so that ``import wan_core.vision`` stays cheap.
"""

from __future__ import annotations

from ..lazy import lazy_attributes

__all__ = ["load_clip_vision"]

__getattr__ = lazy_attributes(__name__, {"load_clip_vision": (".loader", "load_clip_vision")})
