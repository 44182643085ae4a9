"""Prompt cleaning exactly as the official Wan2.1/2.2 ``HuggingfaceTokenizer(clean='whitespace')``.

The official pipeline repairs mojibake (ftfy), unescapes HTML entities twice (prompts
scraped from web pages are often double-escaped, ``&amp;amp;``), and collapses every
whitespace run to a single space. Nothing is lower-cased and no punctuation is removed.
"""

from __future__ import annotations

import html
import logging
import re

log = logging.getLogger(__name__)

_WHITESPACE = re.compile(r"\s+")


def _fix_text(text: str) -> str:
    """ftfy.fix_text when ftfy is installed (a declared dependency), else the text unchanged."""
    try:
        import ftfy
    except ImportError:  # optional at run time: only mojibake repair is lost
        log.debug("ftfy is not installed; prompts are cleaned without mojibake repair")
        return text
    return ftfy.fix_text(text)


def clean_prompt(text: str) -> str:
    """ftfy fix -> html.unescape twice -> strip -> collapse whitespace runs to one space -> strip."""
    text = _fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip()
