"""wan_core.text: the umT5 text encoder, its tokenizer, prompt cleaning and embedding cache.

``load_text_encoder`` is imported lazily (it pulls in torch model code); ``clean_prompt``
is cheap and imported directly.
"""

from __future__ import annotations

from ..lazy import lazy_attributes
from .prompt import clean_prompt

__all__ = ["clean_prompt", "load_text_encoder"]

__getattr__ = lazy_attributes(__name__, {"load_text_encoder": (".loader", "load_text_encoder")})
