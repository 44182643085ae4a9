"""ComfyUI entry point for the Wan Core node pack.

ComfyUI imports this folder as a package. The nodes import ``wan_core`` by its top-level name
(it also runs without ComfyUI, as ``python -m wan_core``), so the bundled ``wan_core`` package is
registered under that name here, loaded straight from this folder by importlib. ``sys.path`` is
left alone: nothing else in this folder becomes importable, and no module of ComfyUI (its
``nodes``, ``utils``, ...) or of another pack can be shadowed.
"""

import importlib.util
import logging
import sys
from pathlib import Path

_WAN_CORE = Path(__file__).resolve().parent / "wan_core"


def _register_wan_core() -> None:
    """Import ./wan_core as the top-level package ``wan_core`` (once; refuse a different copy)."""
    existing = sys.modules.get("wan_core")
    if existing is not None:
        origin = Path(getattr(existing, "__file__", "") or "").resolve().parent
        if origin != _WAN_CORE:
            raise ImportError(
                f"Another package named wan_core is already imported (from {origin}); this pack needs its own "
                f"({_WAN_CORE}). Remove the other copy (pip uninstall it, or drop the other custom node)."
            )
        return
    spec = importlib.util.spec_from_file_location(
        "wan_core", _WAN_CORE / "__init__.py", submodule_search_locations=[str(_WAN_CORE)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["wan_core"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["wan_core"]
        raise


_register_wan_core()

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

WEB_DIRECTORY = "./js"

logging.getLogger(__name__).debug("Wan Core: %d nodes registered", len(NODE_CLASS_MAPPINGS))

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
