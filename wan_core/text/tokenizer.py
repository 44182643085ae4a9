"""umT5 tokenizer without transformers: SentencePiece directly, or a ``tokenizer.json``.

Where the tokenizer comes from, in this order (first found wins):
1. the ``spiece_model`` tensor embedded in the checkpoint (ComfyUI's umT5 files carry it:
   a uint8 tensor holding the serialized SentencePiece model);
2. the ``tokenizer=`` argument: ``spiece.model``, ``tokenizer.json`` or a folder holding
   one of them (e.g. ``google/umt5-xxl`` shipped with the official weights);
3. a tokenizer file or folder next to the checkpoint.
Ids follow the official call: text pieces, then ``</s>``; no BOS; at most 512 ids.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from ..errors import TokenizerError

log = logging.getLogger(__name__)

MAX_TOKENS = 512
EOS_PIECE = "</s>"
TOKENIZER_FILES = ("spiece.model", "tokenizer.model", "tokenizer.json")
# Folders searched beside a checkpoint (the official release ships google/umt5-xxl).
SIBLING_FOLDERS = ("", "google/umt5-xxl", "umt5-xxl", "tokenizer", "umt5_tokenizer")


class Tokenizer:
    """Text -> list of ids ending with ``</s>``; ``identity`` changes with the vocabulary."""

    def __init__(self, encode_fn, eos_id: int, vocab_size: int, identity: str, description: str) -> None:
        self._encode = encode_fn
        self.eos_id = eos_id
        self.vocab_size = vocab_size
        self.identity = identity
        self.description = description

    def encode(self, text: str, max_tokens: int = MAX_TOKENS) -> list[int]:
        """Ids of ``text`` + ``</s>``, truncated to ``max_tokens`` ids (``</s>`` kept last)."""
        ids = list(self._encode(text)) if text else []
        if len(ids) + 1 > max_tokens:
            log.warning(
                "Prompt has %d tokens; the text encoder takes %d, so it is truncated (as in the official "
                "Wan code). Text after token %d is ignored: %r...",
                len(ids) + 1,
                max_tokens,
                max_tokens - 1,
                text[:80],
            )
            ids = ids[: max_tokens - 1]
        return ids + [self.eos_id]


def sentencepiece_tokenizer(model_bytes: bytes, description: str) -> Tokenizer:
    """A tokenizer from a serialized SentencePiece model (the ``spiece.model`` bytes)."""
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    except (RuntimeError, OSError, TypeError) as exc:
        raise TokenizerError(
            f"{description} is not a valid SentencePiece model ({exc}). Use the umT5 spiece.model "
            "(google/umt5-xxl) or a text encoder file with an embedded tokenizer."
        ) from exc
    eos = sp.piece_to_id(EOS_PIECE)
    if sp.id_to_piece(eos) != EOS_PIECE:
        eos = sp.eos_id()
    if eos < 0:
        raise TokenizerError(
            f"{description} has no '</s>' piece; umT5 needs it as end token (id 1). It is not the umT5 "
            "tokenizer: use spiece.model from google/umt5-xxl."
        )
    digest = hashlib.sha256(model_bytes).hexdigest()[:16]
    return Tokenizer(_control_aware_encoder(sp), eos, sp.get_piece_size(), f"spm:{digest}", description)


def _control_aware_encoder(sp) -> Callable[[str], list[int]]:
    """SentencePiece encoding in which control pieces written in the text (``</s>``, ``<pad>``, ``<s>``)
    become their ids, as HF's converted umT5 tokenizer does (they are "added tokens" there).
    """
    controls = {sp.id_to_piece(i): i for i in range(sp.get_piece_size()) if sp.is_control(i)}
    if not controls:
        return lambda text: sp.encode(text, out_type=int)
    pattern = re.compile("(" + "|".join(re.escape(c) for c in sorted(controls, key=len, reverse=True)) + ")")

    def encode(text: str) -> list[int]:
        ids: list[int] = []
        for part in pattern.split(text):
            if part in controls:
                ids.append(controls[part])
            elif part:
                ids.extend(sp.encode(part, out_type=int))
        return ids

    return encode


def json_tokenizer(path: Path) -> Tokenizer:
    """A tokenizer from an HF ``tokenizer.json`` (needs the optional ``tokenizers`` package)."""
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError as exc:
        raise TokenizerError(
            f"{path} is a tokenizer.json, which needs the 'tokenizers' package (pip install tokenizers). "
            "Or pass the spiece.model from the same folder instead."
        ) from exc
    tok = HFTokenizer.from_file(str(path))
    tok.no_truncation()  # we truncate ourselves, keeping </s> and logging a warning
    tok.no_padding()
    eos = tok.token_to_id(EOS_PIECE)
    if eos is None:
        raise TokenizerError(
            f"{path} has no '</s>' token; umT5 needs it as end token. It is not the umT5 tokenizer: use "
            "tokenizer.json or spiece.model from google/umt5-xxl."
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Tokenizer(
        lambda text: tok.encode(text, add_special_tokens=False).ids,
        eos,
        tok.get_vocab_size(),
        f"json:{digest}",
        str(path),
    )


def tokenizer_from_path(path: str | os.PathLike) -> Tokenizer:
    """``spiece.model`` / ``tokenizer.json`` file, or a folder holding one of them."""
    path = Path(path)
    if path.is_dir():
        for name in TOKENIZER_FILES:
            if (path / name).is_file():
                return tokenizer_from_path(path / name)
        raise TokenizerError(
            f"Folder {path} holds none of {', '.join(TOKENIZER_FILES)}. Pass the folder (or file) that holds "
            "the umT5 tokenizer (google/umt5-xxl)."
        )
    if not path.is_file():
        raise TokenizerError(f"Tokenizer {path} does not exist. Check the path or file name.")
    if path.suffix == ".json":
        return json_tokenizer(path)
    return sentencepiece_tokenizer(path.read_bytes(), str(path))


def embedded_tokenizer(tensor: torch.Tensor, description: str) -> Tokenizer:
    """The tokenizer stored in a checkpoint's ``spiece_model`` uint8 tensor."""
    data = tensor.detach().cpu().contiguous().view(torch.uint8).reshape(-1).numpy().tobytes()
    return sentencepiece_tokenizer(data, f"the spiece_model tensor of {description}")


def sibling_candidates(checkpoint: Path) -> Iterable[Path]:
    """Tokenizer files or folders that may sit next to a checkpoint file (or inside its folder)."""
    base = checkpoint if checkpoint.is_dir() else checkpoint.parent
    for folder in SIBLING_FOLDERS:
        for name in TOKENIZER_FILES:
            yield base / folder / name


def find_sibling_tokenizer(checkpoint: Path | None) -> Tokenizer | None:
    if checkpoint is None:
        return None
    for candidate in sibling_candidates(checkpoint):
        if candidate.is_file():
            log.info("Using the tokenizer %s found next to %s", candidate, checkpoint.name)
            return tokenizer_from_path(candidate)
    return None


def missing_tokenizer_error(description: str) -> TokenizerError:
    return TokenizerError(
        f"No tokenizer found for the text encoder {description}. Provide one of: (1) a ComfyUI umT5 file "
        "that embeds it (a 'spiece_model' tensor, e.g. umt5_xxl_fp8_e4m3fn_scaled.safetensors); "
        "(2) tokenizer= pointing at spiece.model, tokenizer.json or a folder such as google/umt5-xxl; "
        "(3) a spiece.model / tokenizer.json / google/umt5-xxl folder next to the checkpoint."
    )
