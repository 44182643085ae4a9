"""wan_core.text: the umT5 text encoder, its tokenizer, prompt cleaning and embedding cache.

``load_text_encoder`` is imported lazily (it pulls in torch model code); ``clean_prompt``
is cheap and imported directly.
"""

from __future__ import annotations

from typing import Any

from .prompt import clean_prompt

__all__ = ["clean_prompt", "load_text_encoder"]


def __getattr__(name: str) -> Any:
    if name == "load_text_encoder":
        from .loader import load_text_encoder

        return load_text_encoder
    raise AttributeError(f"module 'wan_core.text' has no attribute {name!r}")
