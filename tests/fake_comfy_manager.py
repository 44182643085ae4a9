"""A stand-in for ComfyUI's memory manager (``comfy.model_management`` + ``comfy.model_patcher``) for CI.

It keeps the interface and the decisions our patcher meets in ComfyUI 0.3.x:
``load_models_gpu`` moves the requested patchers to the front of ``current_loaded_models``,
frees memory for them by unloading the least recently used others (``free_memory``: partially
when they can, else whole), and grants each a weight budget ("lowvram model memory") from the
free memory, the run's ``memory_required``, the reserve and the minimum inference memory.
``unload_all_models`` is what ``/free`` calls. The "accelerator" is simulated: ``cpu:1`` with a
``capacity`` in bytes (tensors stay in CPU memory), so the budgets and evictions are exact.

:func:`install` puts the fake modules (plus ``comfy.utils`` and ``folder_paths``) into
``sys.modules`` and loads a fresh copy of this pack's ``nodes`` package, which then runs as it
does inside ComfyUI.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import weakref
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
ACCELERATOR = torch.device("cpu", 1)  # same memory as the CPU, a different device to the manager
CPU = torch.device("cpu")
MIB = 2**20


class FakeModelPatcher:
    """The part of ModelPatcher our subclass inherits; used as is for "native" models (loaded whole)."""

    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.size, self.model = size, model
        self.load_device, self.offload_device = load_device, offload_device
        self.parent = None
        self.model_options = {"transformer_options": {}}
        self.loaded = 0
        self.model_size()

    def model_size(self):
        if self.size == 0:
            self.size = sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
        return self.size

    def loaded_size(self):
        return self.loaded

    def current_loaded_device(self):
        return self.load_device if self.loaded else self.offload_device

    def model_patches_models(self):
        return []

    def model_patches_to(self, device):
        pass

    def model_dtype(self):
        return None

    def is_clone(self, other):
        return hasattr(other, "model") and self.model is other.model

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False):
        before = self.loaded
        self.loaded = self.model_size()  # a native model's ops would cast the rest per layer; loaded whole here
        return self.loaded - before

    def partially_unload(self, device_to, memory_to_free=0):
        return 0

    def detach(self, unpatch_all=True):
        if unpatch_all:
            self.loaded = 0
        return self.model


class LoadedModel:
    def __init__(self, patcher):
        self._patcher = weakref.ref(patcher)
        self.device = patcher.load_device
        self.real_model = None

    @property
    def model(self):
        return self._patcher()

    def model_memory(self):
        return self.model.model_size()

    def model_loaded_memory(self):
        return self.model.loaded_size()

    def model_offloaded_memory(self):
        return self.model.model_size() - self.model.loaded_size()

    def model_memory_required(self, device):
        if device == self.model.current_loaded_device():
            return self.model_offloaded_memory()
        return self.model_memory()

    def model_load(self, lowvram_model_memory=0):
        self.model.partially_load(self.device, lowvram_model_memory or 1e32)
        self.real_model = weakref.ref(self.model.model)

    def model_unload(self, memory_to_free=None):
        if memory_to_free is not None and memory_to_free < self.model.loaded_size():
            if self.model.partially_unload(self.model.offload_device, memory_to_free) >= memory_to_free:
                return False
        self.model.detach(True)
        return True

    def alive(self):
        return self.model is not None and self.model.model is not None


class FakeManager:
    """``comfy.model_management`` on a simulated accelerator of ``capacity`` bytes."""

    def __init__(self, capacity: int, reserve: int = 4 * MIB, inference: int = 2 * MIB):
        self.capacity, self.reserve, self.inference = capacity, reserve, inference
        self.current_loaded_models: list[LoadedModel] = []
        self.seen: weakref.WeakSet = weakref.WeakSet()  # every patcher loaded once: what holds device memory
        self.used_by_others = 0  # bytes held outside the manager (another process, activations)
        self.interrupted = False

    # devices
    def get_torch_device(self):
        return ACCELERATOR

    def unet_offload_device(self):
        return CPU

    vae_device = text_encoder_device = get_torch_device
    vae_offload_device = text_encoder_offload_device = unet_offload_device

    # memory
    def extra_reserved_memory(self):
        return self.reserve

    def minimum_inference_memory(self):
        return self.inference + self.reserve

    def get_free_memory(self, dev=None, torch_free_too=False):
        held = sum(p.loaded_size() for p in self.seen if p.load_device == ACCELERATOR)  # like the device would
        free = self.capacity - held - self.used_by_others
        return (free, 0) if torch_free_too else free

    def _cleanup(self):
        self.current_loaded_models[:] = [m for m in self.current_loaded_models if m.alive()]

    def free_memory(self, memory_required, device, keep_loaded=()):
        self._cleanup()
        candidates = sorted(
            (-m.model_offloaded_memory(), i) for i, m in enumerate(self.current_loaded_models) if m not in keep_loaded
        )
        unloaded = []
        for _, i in candidates:
            free = self.get_free_memory(device)
            if free > memory_required:
                break
            if self.current_loaded_models[i].model_unload(memory_required - free):
                unloaded.append(i)
        for i in sorted(unloaded, reverse=True):
            self.current_loaded_models.pop(i)

    def load_models_gpu(self, models, memory_required=0, force_patch_weights=False, minimum_memory_required=None):
        self._cleanup()
        inference = self.minimum_inference_memory()
        extra = max(inference, memory_required + self.reserve)
        minimum = extra if minimum_memory_required is None else max(inference, minimum_memory_required + self.reserve)
        to_load = []
        for patcher in models:
            self.seen.add(patcher)
            found = [m for m in self.current_loaded_models if m.model is patcher]
            to_load.append(found[0] if found else LoadedModel(patcher))
            for m in found:
                self.current_loaded_models.remove(m)
        required = sum(m.model_memory_required(ACCELERATOR) for m in to_load)
        self.free_memory(required * 1.1 + extra, ACCELERATOR)
        if self.get_free_memory(ACCELERATOR) < minimum:
            self.free_memory(minimum, ACCELERATOR)
        for loaded in to_load:
            held = loaded.model_loaded_memory()
            free = self.get_free_memory(ACCELERATOR) + held
            grant = max(128 * 1024, free - minimum, min(free * 0.4, free - inference))
            loaded.model_load(max(0.1, grant - held))
            self.current_loaded_models.insert(0, loaded)

    def unload_all_models(self):
        self.free_memory(1e30, ACCELERATOR)

    def loaded(self, ours_only=True):
        """(class name, loaded bytes) of what the manager holds, most recent first."""
        self._cleanup()
        return [
            (type(m.model.model).__name__, m.model_loaded_memory())
            for m in self.current_loaded_models
            if not ours_only or type(m.model).__name__ == "WanModelPatcher"
        ]

    # interrupts (comfy_bridge's progress hooks)
    def processing_interrupted(self):
        return self.interrupted

    def throw_exception_if_processing_interrupted(self):
        pass

    class InterruptProcessingException(Exception):
        pass


def install(monkeypatch, manager: FakeManager, models_dir: Path):
    """Fake ComfyUI modules in sys.modules; returns a fresh copy of the pack's ``nodes`` package running "inside"."""
    # The plain package first, before the fakes go in: a reference run in the same test (and every later
    # test) must get the standalone bridge, not one bound to fakes that are gone after this test.
    for plain in ("nodes", "nodes.comfy_bridge", "nodes.multigpu"):
        importlib.import_module(plain)
    mm = types.ModuleType("comfy.model_management")
    for name in dir(manager):
        if not name.startswith("_"):
            setattr(mm, name, getattr(manager, name))
    patcher = types.ModuleType("comfy.model_patcher")
    patcher.ModelPatcher = FakeModelPatcher
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = lambda total: types.SimpleNamespace(update_absolute=lambda *a, **k: None)
    folders = types.ModuleType("folder_paths")
    folders.get_full_path = lambda folder, name: str(models_dir / folder / name)
    folders.get_folder_paths = lambda folder: [str(models_dir / folder)]
    folders.get_filename_list = lambda folder: sorted(p.name for p in (models_dir / folder).glob("*"))
    cli_args = types.ModuleType("comfy.cli_args")  # ComfyUI's defaults: no live previews, metadata on
    cli_args.LatentPreviewMethod = types.SimpleNamespace(NoPreviews="none")
    cli_args.args = types.SimpleNamespace(preview_method="none", preview_size=512, disable_metadata=False)
    comfy = types.ModuleType("comfy")
    comfy.model_management, comfy.model_patcher, comfy.utils, comfy.cli_args = mm, patcher, utils, cli_args
    modules = {
        "comfy": comfy,
        "comfy.model_management": mm,
        "comfy.model_patcher": patcher,
        "comfy.utils": utils,
        "comfy.cli_args": cli_args,
    }
    for name, module in {**modules, "folder_paths": folders}.items():
        monkeypatch.setitem(sys.modules, name, module)
    name = "wan_nodes_in_fake_comfyui"
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "nodes" / "__init__.py", submodule_search_locations=[str(ROOT / "nodes")]
    )
    package = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, package)
    spec.loader.exec_module(package)
    for sub in [n for n in sys.modules if n.startswith(name + ".")]:
        monkeypatch.setitem(sys.modules, sub, sys.modules.pop(sub))  # recorded as new: removed after the test
    return package
