"""Block swap: keep some DiT blocks' weights on an offload device and stream them in per use.

The offload copy is the source of truth (weights never change during sampling;
run-time LoRA lives in ``WanLinear.adapters``; a merge into a swapped block's weight
edits the offload copy). Before a swapped block runs, each of its tensors is copied to
the device of the block's input (``non_blocking``, from pinned memory when offloading
to CPU on a CUDA machine); afterwards the parameters point back at the offload
copies, so the device copies are freed. Quantised weights move as their stored bytes
(fp8 / int8 values with their ``scale_weight`` buffers, packed GGUF blocks); they are
dequantised only inside the layer that uses them (:mod:`wan_core.quant`). ``WanDiT.to(...)`` leaves swapped blocks where they are
(see :meth:`BlockSwap.hidden`), so moving the model never loads them all at once.

On CUDA the next swapped block is prefetched on a side stream while the current one
computes, so the PCIe transfer hides behind the block's compute instead of adding to it.
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

    def __init__(self, blocks: nn.ModuleList, n: int, offload_device: torch.device, prefetch: bool = True) -> None:
        self.blocks = blocks
        self.offload_device = offload_device
        self.indices = list(range(max(0, min(n, len(blocks)))))
        self.prefetch = prefetch
        self._handles = []
        self._saved: dict[int, list[tuple[dict, str, torch.Tensor]]] = {}
        self._index = {id(blocks[i]): i for i in self.indices}
        self._pending: dict[int, tuple[list[tuple[dict, str, torch.Tensor, torch.Tensor]], torch.cuda.Event]] = {}
        self._stream: torch.cuda.Stream | None = None
        for i in self.indices:
            block = blocks[i]
            for store, name, t in list(_tensor_slots(block)):
                _put(store, name, t, _offload_copy(t, offload_device))
            self._handles.append(block.register_forward_pre_hook(self._bring_in))
            self._handles.append(block.register_forward_hook(self._send_back))

    def _bring_in(self, block: nn.Module, args) -> None:
        target = args[0].device if args and isinstance(args[0], torch.Tensor) else None
        index = self._index[id(block)]
        pending = self._pending.pop(index, None)
        if pending is not None and target is not None:
            copies, ready = pending
            stream = torch.cuda.current_stream(target)
            stream.wait_event(ready)
            for store, name, old, new in copies:
                new.record_stream(stream)  # allocated on the side stream, used on this one
                _put(store, name, old, new)
            self._saved[id(block)] = [(store, name, old) for store, name, old, _ in copies]
        else:
            self._saved[id(block)] = self._copy_in(block, target)
        if target is not None:
            self._prefetch(index + 1, target)

    def _copy_in(self, block: nn.Module, target: torch.device | None) -> list[tuple[dict, str, torch.Tensor]]:
        saved = []
        for store, name, t in list(_tensor_slots(block)):
            if target is None or t.device == target:
                continue
            saved.append((store, name, t))
            _put(store, name, t, t.to(target, non_blocking=True))
        return saved

    def _prefetch(self, index: int, target: torch.device) -> None:
        """Start copying swapped block ``index`` to ``target`` on a side stream (CUDA only)."""
        if not self.prefetch or target.type != "cuda" or index not in self.indices or index in self._pending:
            return
        if self._stream is None:
            self._stream = torch.cuda.Stream(target)
        copies = []
        with torch.cuda.stream(self._stream):
            for store, name, t in list(_tensor_slots(self.blocks[index])):
                if t.device != target:
                    copies.append((store, name, t, t.to(target, non_blocking=True)))
            ready = torch.cuda.Event()
            ready.record(self._stream)
        self._pending[index] = (copies, ready)

    def discard_prefetch(self) -> None:
        """Drop prefetched copies (called at the start of a forward: weights may have changed since)."""
        self._pending.clear()

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
        self.discard_prefetch()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for i in self.indices:
            self.blocks[i].to(device)
