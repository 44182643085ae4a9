"""Our models under ComfyUI's memory manager: a ModelPatcher for wan_core modules.

Imported only by ``comfy_bridge``, inside ComfyUI: the base class and
``comfy.model_management`` are handed in (this module imports nothing from ComfyUI).

ComfyUI's manager (``load_models_gpu`` / ``free_memory``) asks a patcher for its size,
what it holds on the device, and to load, partially unload or detach itself. ComfyUI's
own partial loading casts weights per layer inside its ops; wan_core modules do not use
those ops, so a DiT that gets less memory than it needs streams its first blocks instead
(:mod:`wan_core.dit.blockswap`), as many as the grant requires. Other modules (VAE,
text encoder, CLIP) load whole.

The patcher holds its module weakly: the node output that holds the module (ComfyUI's
cache) decides how long it lives; when it goes, the patcher goes, and ComfyUI drops the
entry from ``current_loaded_models``.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from wan_core.budget import SwapPlan, dit_block_bytes, plan_block_swap, stored_bytes
from wan_core.parallel.fsdp import is_sharded

log = logging.getLogger(__name__)


def home_device(module: nn.Module) -> torch.device:
    """Where a module lives: its ``device`` property (DiT, VAE) or its first tensor's device."""
    if isinstance(getattr(type(module), "device", None), property):
        return torch.device(module.device)  # type: ignore[arg-type]
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


def same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def swappable(module: nn.Module) -> bool:
    """A DiT that can stream its blocks (``set_block_swap``) and is not sharded across ranks."""
    return hasattr(module, "set_block_swap") and hasattr(module, "blocks") and not is_sharded(module)


def swapped_blocks(module: nn.Module) -> int:
    swap = getattr(module, "block_swap", None)
    return len(swap.indices) if swap is not None else 0


# ComfyUI's ModelPatcher, the class this one is mixed into, ships no types: to the checker it is Any.
_ModelPatcher: Any = object


class WanPatcherMixin(_ModelPatcher):
    """One wan_core module (DiT, VAE, umT5, CLIP) as ComfyUI's manager sees it.

    ``run_bytes``: device memory the coming run needs besides the weights (set before each
    load); ``block_swap_override``: the loader's manual block count (None = from the grant);
    ``on_unload``: weak references to callbacks run when the manager unloads the module
    (e.g. stop the multi-GPU workers).
    """

    mm: Any  # comfy.model_management (set by patcher_class)

    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False) -> None:
        self._module_ref: Callable[[], nn.Module | None] = lambda: None
        self._loaded = 0
        self.kind = type(model).__name__
        self.run_bytes = 0
        self.block_swap_override: int | None = None
        self.on_unload: list[Callable[[], Callable[[], None] | None]] = []  # weak references
        super().__init__(model, load_device, offload_device, size, weight_inplace_update)

    # The module, held weakly (ModelPatcher's __init__ assigns it through this property).
    @property
    def model(self) -> Any:
        return self._module_ref()

    @model.setter
    def model(self, module: nn.Module) -> None:
        self._module_ref = weakref.ref(module)

    def model_size(self) -> int:
        module = self.model
        if module is not None:
            self.size = stored_bytes(module)
        return self.size

    def loaded_size(self) -> int:
        return self._loaded

    def current_loaded_device(self) -> torch.device:
        module = self.model
        return home_device(module) if module is not None else self.offload_device

    def is_clone(self, other: Any) -> bool:
        return other is self

    # ------------------------------------------------------------------ loading

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False) -> int:
        """Bring the module onto ``device_to`` within ``loaded + extra_memory`` bytes; bytes added."""
        module = self.model
        if module is None:
            return 0
        before, target = self._loaded, torch.device(device_to)
        if is_sharded(module):  # its shards live on their ranks' devices
            self._loaded = stored_bytes(module)
        elif swappable(module) and not same_device(target, torch.device(self.offload_device)):
            plan = self.plan(module, self.weight_budget(target, before + extra_memory))
            self.apply(module, plan.swapped)
            module.to(target)
            self._loaded = plan.resident
        else:  # loads whole (swapping onto the device it runs on would gain nothing)
            if swappable(module):
                self.apply(module, 0)
            module.to(target)
            self._loaded = stored_bytes(module)
        return self._loaded - before

    def weight_budget(self, device: torch.device, granted: float) -> float:
        """What the weights may use: the grant, but never more than the free memory minus the run's.

        (ComfyUI's grant can exceed that: it lets weights take 40% of the free memory even when
        the run's activations need more than the other 60%.)
        """
        free = self.mm.get_free_memory(device) + self._loaded - self.run_bytes - self.mm.extra_reserved_memory()
        return max(0.0, min(granted, free))

    def plan(self, module: nn.Module, budget: float) -> SwapPlan:
        fixed, blocks = dit_block_bytes(module)
        plan = plan_block_swap(fixed, blocks, budget, self.block_swap_override)
        if plan.swapped and self.block_swap_override is None:
            log.info(
                "%s: %.2f GiB granted for %.2f GiB of weights; streaming %d of %d blocks.",
                self.kind, budget / 2**30, (fixed + sum(blocks)) / 2**30, plan.swapped, len(blocks),
            )  # fmt: skip
        return plan

    def apply(self, module: nn.Module, swapped: int) -> None:
        if swapped != swapped_blocks(module):
            module.set_block_swap(swapped, self.offload_device)  # type: ignore[operator]

    # ------------------------------------------------------------------ unloading

    def partially_unload(self, device_to, memory_to_free=0) -> int:
        """Stream more blocks until ``memory_to_free`` bytes are freed; bytes freed (0: cannot, unload whole)."""
        module = self.model
        if module is None or not swappable(module) or self._loaded == 0:
            return 0
        fixed, blocks = dit_block_bytes(module)
        before = self._loaded
        if before - plan_block_swap(fixed, blocks, 0, len(blocks)).resident < memory_to_free:
            return 0  # not even streaming every block frees enough: ComfyUI then unloads it whole
        plan = next(
            p
            for p in (plan_block_swap(fixed, blocks, 0, n) for n in range(swapped_blocks(module), len(blocks) + 1))
            if before - p.resident >= memory_to_free
        )
        self.apply(module, plan.swapped)
        self._loaded = plan.resident
        return before - self._loaded

    def detach(self, unpatch_all=True) -> Any:
        """Move the module to the offload device (``unpatch_all``), as ComfyUI's unload does."""
        module = self.model
        if module is None or not unpatch_all:
            return module
        if not is_sharded(module):
            module.to(self.offload_device)
        self._loaded = 0
        for ref in list(self.on_unload):
            callback = ref()
            if callback is not None:
                callback()
        return module

    def __del__(self) -> None:  # ModelPatcher's detaches; ours has nothing to undo
        pass


def patcher_class(base: Any, mm: Any) -> Any:
    """ComfyUI's ``ModelPatcher`` subclass for wan_core modules (``base``: ModelPatcher, ``mm``: model_management)."""
    return type("WanModelPatcher", (WanPatcherMixin, base), {"mm": mm, "__doc__": WanPatcherMixin.__doc__})
