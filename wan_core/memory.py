"""Where models live between uses: the standalone offload helpers and the host hook.

A Wan run has distinct phases (text encoding, sampling, VAE decoding); with
``offload`` each model visits the compute device only for its own phase, so the
peak is the largest model instead of the sum. On CPU these helpers do nothing.

A host with its own memory manager (ComfyUI) instead passes a :class:`ModelHost`
to the calls that run models (``sample``, ``TextEncoder.encode``): it is asked to make
each model ready right before it computes, and decides itself what to evict.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch

from .devices import empty_cache

log = logging.getLogger(__name__)


class ModelHost(Protocol):
    """Makes a model ready to compute on its device (loads it, evicting others as the host sees fit)."""

    def activate(self, model: Any) -> None: ...


def _as_list(models: Any) -> list[Any]:
    if models is None:
        return []
    if isinstance(models, Sequence) and not isinstance(models, torch.nn.Module):
        return [m for m in models if m is not None]
    return [models]


def move(models: Any, device: torch.device | str) -> None:
    """Move each model that can be moved (has ``.to``) to ``device``."""
    for model in _as_list(models):
        if hasattr(model, "to"):
            model.to(device)


@contextmanager
def on_device(
    models: Any, device: torch.device | str, offload: bool, home: torch.device | str = "cpu"
) -> Iterator[None]:
    """Inside the block ``models`` sit on ``device``; with ``offload`` they go back to ``home`` after.

    Without ``offload`` the models are moved to ``device`` (a no-op when already
    there) and stay; this lets one code path serve both policies.
    """
    target = torch.device(device)
    move(models, target)
    try:
        yield
    finally:
        if offload and target.type != torch.device(home).type:
            move(models, home)
            empty_cache(target)
            log.debug("offloaded %d model(s) to %s", len(_as_list(models)), home)
