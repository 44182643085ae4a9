"""Block swap: keep some DiT blocks' weights on an offload device and stream them in per use.

The offload copy is the source of truth (weights never change during sampling;
run-time LoRA lives in ``WanLinear.adapters``). Before a block runs, each of its
tensors is copied to the compute device (``non_blocking``, from pinned memory when
offloading to CPU for a CUDA model); afterwards the parameters point back at the
offload copies, so the device copies are freed. fp8 weights and ``scale_weight``
buffers are moved as they are (they stay fp8).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def _offload_copy(t: torch.Tensor, device: torch.device, pin: bool) -> torch.Tensor:
    out = t.detach().to(device)
    if pin and out.device.type == "cpu":
        try:
            out = out.pin_memory()
        except RuntimeError as exc:  # no pinnable memory (e.g. CPU-only builds)
            log.debug("pin_memory failed: %s", exc)
    return out


class BlockSwap:
    """Offload ``blocks[:n]`` to ``offload_device``; hooks bring each block to ``compute_device`` for its forward."""

    def __init__(self, blocks: nn.ModuleList, n: int, offload_device: torch.device, compute_device: torch.device):
        self.compute_device = compute_device
        self.offload_device = offload_device
        self.swapped = list(blocks)[: max(0, min(n, len(blocks)))]
        pin = compute_device.type == "cuda" and offload_device.type == "cpu"
        self._handles = []
        for block in self.swapped:
            for module in block.modules():
                for store in (module._parameters, module._buffers):
                    for name, t in store.items():
                        if t is not None:
                            off = _offload_copy(t, offload_device, pin)
                            store[name] = nn.Parameter(off, requires_grad=False) if store is module._parameters else off
            self._handles.append(block.register_forward_pre_hook(self._bring_in))
            self._handles.append(block.register_forward_hook(self._send_back))
        self._offloaded: dict[int, list[tuple[dict, str, torch.Tensor]]] = {}

    def _bring_in(self, block: nn.Module, args) -> None:
        saved = []
        for module in block.modules():
            for store in (module._parameters, module._buffers):
                for name, t in store.items():
                    if t is None or t.device == self.compute_device:
                        continue
                    saved.append((store, name, t))
                    moved = t.to(self.compute_device, non_blocking=True)
                    store[name] = nn.Parameter(moved, requires_grad=False) if isinstance(t, nn.Parameter) else moved
        self._offloaded[id(block)] = saved

    def _send_back(self, block: nn.Module, args, output) -> None:
        for store, name, t in self._offloaded.pop(id(block), []):
            store[name] = t

    def remove(self) -> None:
        """Stop swapping and move the swapped blocks back to the compute device."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for block in self.swapped:
            block.to(self.compute_device)
