"""Block swap: keep some DiT blocks' weights on an offload device and stream them in per use.

The offload copy is the source of truth (weights never change during sampling;
run-time LoRA lives in ``WanLinear.adapters``; a merge into a swapped block's weight
edits the offload copy). Before a swapped block runs, each of its tensors is copied to
the device of the block's input (``non_blocking``, from pinned memory when offloading
to CPU on a CUDA machine); afterwards the parameters point back at the offload
copies, so the device copies are freed. fp8 weights and ``scale_weight`` buffers move
as they are (they stay fp8). ``WanDiT.to(...)`` leaves swapped blocks where they are
(see :meth:`BlockSwap.hidden`), so moving the model never loads them all at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

log = logging.getLogger(__name__)


def _tensor_slots(block: nn.Module) -> Iterator[tuple[dict, str, torch.Tensor]]:
    for module in block.modules():
        for store in (module._parameters, module._buffers):
            for name, t in store.items():
                if t is not None:
                    yield store, name, t


def _put(store: dict, name: str, old: torch.Tensor, new: torch.Tensor) -> None:
    store[name] = nn.Parameter(new, requires_grad=False) if isinstance(old, nn.Parameter) else new


def _offload_copy(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    out = t.detach().to(device)
    if out.device.type == "cpu" and torch.cuda.is_available():
        try:
            out = out.pin_memory()
        except RuntimeError as exc:  # pinning can fail under memory limits; plain memory still works
            log.debug("pin_memory failed: %s", exc)
    return out


class BlockSwap:
    """Offload ``blocks[:n]`` to ``offload_device``; hooks bring each to its input's device for its forward."""

    def __init__(self, blocks: nn.ModuleList, n: int, offload_device: torch.device) -> None:
        self.blocks = blocks
        self.offload_device = offload_device
        self.indices = list(range(max(0, min(n, len(blocks)))))
        self._handles = []
        self._saved: dict[int, list[tuple[dict, str, torch.Tensor]]] = {}
        for i in self.indices:
            block = blocks[i]
            for store, name, t in list(_tensor_slots(block)):
                _put(store, name, t, _offload_copy(t, offload_device))
            self._handles.append(block.register_forward_pre_hook(self._bring_in))
            self._handles.append(block.register_forward_hook(self._send_back))

    def _bring_in(self, block: nn.Module, args) -> None:
        target = args[0].device if args and isinstance(args[0], torch.Tensor) else None
        saved = []
        for store, name, t in list(_tensor_slots(block)):
            if target is None or t.device == target:
                continue
            saved.append((store, name, t))
            _put(store, name, t, t.to(target, non_blocking=True))
        self._saved[id(block)] = saved

    def _send_back(self, block: nn.Module, args, output) -> None:
        for store, name, t in self._saved.pop(id(block), []):
            store[name] = t

    @contextmanager
    def hidden(self) -> Iterator[None]:
        """Temporarily take the swapped blocks out of the ModuleList (used by ``WanDiT._apply``)."""
        modules = self.blocks._modules
        kept = dict(modules)
        for i in self.indices:
            modules.pop(str(i))
        try:
            yield
        finally:
            modules.clear()
            modules.update(kept)

    def remove(self, device: torch.device) -> None:
        """Stop swapping and move the swapped blocks to ``device``."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for i in self.indices:
            self.blocks[i].to(device)
