"""ComfyUI entry point for the Wan Core node pack.

ComfyUI imports this folder as a package. ``wan_core`` is a plain top-level
package (it also runs without ComfyUI), so this folder is *appended* to sys.path:
ComfyUI's own modules (notably its ``nodes``) keep precedence.
"""

import logging
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

WEB_DIRECTORY = "./js"

logging.getLogger(__name__).debug("Wan Core: %d nodes registered", len(NODE_CLASS_MAPPINGS))

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
