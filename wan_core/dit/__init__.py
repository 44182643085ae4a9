"""wan_core.dit: the Wan2.1 / Wan2.2 diffusion transformer.

    dit = wan_core.load_dit(source, device=None, dtype=None, attention="auto")
    v = dit(x, t, context, clip_fea=None, y=None, vace_context=None, vace_scale=1.0)

Modules: config (DiTConfig + detection), model (WanDiT), blocks, embeddings, rope,
attention (backend dispatch), vace, blockswap, loader, convert (diffusers names), tiny.
Heavy modules are imported lazily.
"""

from __future__ import annotations

from ..lazy import lazy_attributes

_LAZY = {
    "load_dit": (".loader", "load_dit"),
    "detect_config": (".loader", "detect_config"),
    "WanDiT": (".model", "WanDiT"),
    "DiTConfig": (".config", "DiTConfig"),
    "tiny_dit_state_dict": (".tiny", "tiny_dit_state_dict"),
}

__all__ = list(_LAZY)

__getattr__ = lazy_attributes(__name__, _LAZY)
