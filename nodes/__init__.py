"""ComfyUI nodes over wan_core. Each submodule exports NODE_CLASSES: {name: (cls, display name)}."""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

# Node modules, in menu order. A module that fails to import is logged and skipped,
# so one broken optional dependency never hides the whole pack.
NODE_MODULES: tuple[str, ...] = (
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
)

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

for _name in NODE_MODULES:
    try:
        _module = importlib.import_module(f".{_name}", __name__)
    except ImportError as exc:  # keep the rest of the pack usable
        log.error("Wan Core: node module %s failed to import: %s", _name, exc)
        continue
    for _node_id, (_cls, _display) in _module.NODE_CLASSES.items():
        NODE_CLASS_MAPPINGS[_node_id] = _cls
        NODE_DISPLAY_NAME_MAPPINGS[_node_id] = _display
