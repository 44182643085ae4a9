"""Typed errors for wan_core.

Every message says what was found, what was expected and what to do, so that a
user reading it in ComfyUI's error panel can fix the graph without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class WanError(Exception):
    """Base class of every error wan_core raises on purpose."""


class CheckpointError(WanError):
    """A file or state dict is unreadable, incomplete, or not the model asked for."""


class UnsupportedModelError(CheckpointError):
    """The weights look like a model family or variant that is not supported."""


class InputError(WanError, ValueError):
    """A user-facing input (size, frame count, conditioning) is invalid."""


class ConditioningError(InputError):
    """Conditioning that the loaded model cannot take (e.g. VACE on a T2V model)."""


class LoraError(WanError):
    """A LoRA file matches nothing, or does not fit the model it is applied to."""


class TokenizerError(WanError):
    """No usable tokenizer could be found for a text encoder."""


class BackendUnavailableError(WanError):
    """An optional backend (flash-attn, sageattention, fp8 matmul) was asked for but is missing."""


class ParallelError(WanError):
    """A multi-GPU run cannot start or continue: bad layout, a dead worker, a collective that timed out."""


class ParallelWorkerError(ParallelError):
    """A worker process of a multi-GPU model died or stopped answering; the group was shut down."""


class WanInterrupted(WanError):
    """The caller asked to stop (ComfyUI's interrupt button, Ctrl-C in the CLI)."""


class WanTerminated(WanInterrupted):
    """The process was asked to end (SIGTERM); partial output is removed as for an interrupt."""


class NonFiniteError(InputError):
    """NaN or Inf found in settings, weights, inputs, embeddings or the latent being sampled."""


class OutputError(InputError):
    """The output path cannot be written (wrong extension, not writable, disk full, not a regular file)."""


class ResourceLimitError(InputError):
    """A requested size is beyond what the model was built for or what memory can hold."""


def preview_keys(keys: Iterable[str], limit: int = 5) -> str:
    """Format the first few keys of a collection for an error message."""
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return shown + more
