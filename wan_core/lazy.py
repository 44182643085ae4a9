"""Lazy package attributes (PEP 562): heavy submodules load on first use, so importing a package stays cheap.

ComfyUI imports every node pack at start-up and the CLI's ``--help`` should not pull in model code; each
package that exports something heavy names it in a table and sets ``__getattr__ = lazy_attributes(...)``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, table: Mapping[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``table[name] = (relative module, attribute)``, imported on first
    use and then kept in the package's namespace (later look-ups do not come here)."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attr = table[name]
        value = getattr(importlib.import_module(module, package), attr)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
