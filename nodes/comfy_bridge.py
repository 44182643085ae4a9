"""The only module that imports ComfyUI: folders, devices, progress, previews, interrupts.

Inside ComfyUI it delegates to ``folder_paths``, ``comfy.model_management``,
``comfy.utils.ProgressBar`` and ``server.PromptServer``. Outside ComfyUI (tests,
plain Python) every function has a standalone fallback, so the node classes import
and run anywhere:

* model folders: ``$WAN_CORE_MODELS_DIR/<folder>`` plus :data:`EXTRA_MODEL_PATHS`
  (``{"vae": ["/path/a", ...]}``), read at call time;
* input files: ``$WAN_CORE_INPUT_DIR`` (default: the pack's ``workflows/inputs``);
* output files: ``$WAN_CORE_OUTPUT_DIR`` (default: ``<tmp>/wan_core_output``);
* progress: a tqdm bar; interrupts: never.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wan_core.errors import InputError, WanInterrupted
from wan_core.memory import ModelHost
from wan_core.progress import RunHooks

log = logging.getLogger(__name__)

try:  # ComfyUI present: these imports succeed only inside a ComfyUI process (it ships no types: Any)
    _mm: Any = importlib.import_module("comfy.model_management")
    _comfy_utils: Any = importlib.import_module("comfy.utils")
    _folder_paths: Any = importlib.import_module("folder_paths")

    IN_COMFYUI = True
except ImportError:
    _mm = _comfy_utils = _folder_paths = None
    IN_COMFYUI = False

PACK_ROOT = Path(__file__).resolve().parents[1]
MODEL_FOLDERS = ("diffusion_models", "vae", "text_encoders", "clip_vision", "loras")
MODEL_EXTENSIONS = (".safetensors", ".sft", ".pth", ".pt", ".ckpt", ".bin", ".gguf")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".webp")

# Standalone extra model folders: {"vae": ["/some/dir", ...]} (like extra_model_paths.yaml).
EXTRA_MODEL_PATHS: dict[str, list[str]] = {}


# --------------------------------------------------------------------------- folders


def _standalone_model_dirs(folder: str) -> list[Path]:
    dirs = [Path(p) for p in EXTRA_MODEL_PATHS.get(folder, [])]
    root = os.environ.get("WAN_CORE_MODELS_DIR")
    if root:
        dirs.append(Path(root) / folder)
    return [d for d in dirs if d.is_dir()]


def _list_files(dirs: list[Path], extensions: tuple[str, ...]) -> list[str]:
    names: set[str] = set()
    for base in dirs:
        for path in base.rglob("*"):
            if path.is_file() and path.suffix.lower() in extensions:
                names.add(path.relative_to(base).as_posix())
    return sorted(names)


GGUF_FOLDERS = ("diffusion_models",)  # wan_core reads GGUF DiTs; ComfyUI's own lists leave .gguf out


def model_files(folder: str) -> list[str]:
    """File names (relative to the folder) of the models in one of ComfyUI's model folders."""
    if IN_COMFYUI:
        names = list(_folder_paths.get_filename_list(folder))
        if folder in GGUF_FOLDERS:
            dirs = [Path(p) for p in _folder_paths.get_folder_paths(folder)]
            names = sorted(set(names) | set(_list_files(dirs, (".gguf",))))
        return names
    return _list_files(_standalone_model_dirs(folder), MODEL_EXTENSIONS)


def model_path(folder: str, name: str) -> str:
    """Absolute path of model ``name`` in ``folder``; InputError naming the folders searched."""
    if IN_COMFYUI:
        path = _folder_paths.get_full_path(folder, name)
        searched = ", ".join(_folder_paths.get_folder_paths(folder))
    else:
        path = None
        dirs = _standalone_model_dirs(folder)
        for base in dirs:
            candidate = base / name
            if candidate.is_file():
                path = str(candidate)
                break
        searched = ", ".join(str(d) for d in dirs) or "(none: set WAN_CORE_MODELS_DIR)"
    if not path:
        raise InputError(
            f"Model file {name!r} not found in the {folder!r} folder(s): {searched}. "
            f"Download it into models/{folder}/ and refresh the node."
        )
    return path


def input_dir() -> Path:
    if IN_COMFYUI:
        return Path(_folder_paths.get_input_directory())
    return Path(os.environ.get("WAN_CORE_INPUT_DIR") or PACK_ROOT / "workflows" / "inputs")


def output_dir() -> Path:
    if IN_COMFYUI:
        return Path(_folder_paths.get_output_directory())
    path = Path(os.environ.get("WAN_CORE_OUTPUT_DIR") or Path(tempfile.gettempdir()) / "wan_core_output")
    path.mkdir(parents=True, exist_ok=True)
    return path


def input_files(extensions: tuple[str, ...]) -> list[str]:
    """Files in the input folder (top level) with one of ``extensions``."""
    base = input_dir()
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_file() and p.suffix.lower() in extensions)


def input_path(name: str) -> Path:
    path = input_dir() / name
    if not path.is_file():
        raise InputError(f"Input file {name!r} not found in {input_dir()}: put it into ComfyUI's input folder.")
    return path


def save_path(prefix: str, width: int, height: int) -> tuple[Path, str, int, str]:
    """(folder, file stem, counter, subfolder) for a new output file, as ComfyUI's savers do."""
    if IN_COMFYUI:
        folder, stem, counter, subfolder, _ = _folder_paths.get_save_image_path(
            prefix, _folder_paths.get_output_directory(), width, height
        )
        return Path(folder), stem, counter, subfolder
    sub, _, stem = prefix.replace("\\", "/").rpartition("/")
    folder = output_dir() / sub
    folder.mkdir(parents=True, exist_ok=True)
    counter = 1 + sum(1 for p in folder.glob(f"{stem}_*") if p.is_file())
    return folder, stem, counter, sub


def metadata_enabled() -> bool:
    """False when ComfyUI runs with --disable-metadata (then saved files carry no prompt/workflow)."""
    if IN_COMFYUI:
        return not importlib.import_module("comfy.cli_args").args.disable_metadata
    return True


# --------------------------------------------------------------------------- devices


def compute_device() -> torch.device:
    if IN_COMFYUI:
        return _mm.get_torch_device()
    from wan_core.devices import resolve_device

    return resolve_device(None)


# --------------------------------------------------------------------------- memory (see docs/NODES.md)


@dataclass(frozen=True)
class Placement:
    """Devices of one model: it computes on ``compute``, waits on ``offload``; loaders put its weights on ``initial``."""

    compute: torch.device
    offload: torch.device
    initial: torch.device


def placement(kind: str, on_cpu: bool = False) -> Placement:
    """ComfyUI's devices for a model ``kind`` ("diffusion", "vae", "text", "clip"), as its own loaders use them.

    Inside ComfyUI weights are loaded onto the offload device and its manager moves them in
    before each use; standalone they go straight to the compute device. ``on_cpu``: the
    user asked for the CPU (e.g. the text encoder), everything stays there.
    """
    if on_cpu:
        cpu = torch.device("cpu")
        return Placement(cpu, cpu, cpu)
    if not IN_COMFYUI:
        return Placement(compute_device(), torch.device("cpu"), compute_device())
    compute, offload = {
        "diffusion": (_mm.get_torch_device, _mm.unet_offload_device),
        "vae": (_mm.vae_device, _mm.vae_offload_device),
        "text": (_mm.text_encoder_device, _mm.text_encoder_offload_device),
        "clip": (_mm.text_encoder_device, _mm.text_encoder_offload_device),
    }[kind]
    return Placement(torch.device(compute()), torch.device(offload()), torch.device(offload()))


# Device bytes a run needs besides the weights; called only when a memory manager asks (inside ComfyUI).
Estimate = Callable[[], int]

_patchers: weakref.WeakKeyDictionary[nn.Module, Any] = weakref.WeakKeyDictionary()
_patcher_type: Any = None


def _patcher(module: nn.Module, where: Placement) -> Any:
    """The module's patcher, created (and registered with ``where``'s devices) on first use."""
    return _patchers.get(module) or _new_patcher(module, where)


def _new_patcher(module: nn.Module, where: Placement) -> Any:
    global _patcher_type
    if _patcher_type is None:
        from .comfy_patcher import patcher_class

        _patcher_type = patcher_class(importlib.import_module("comfy.model_patcher").ModelPatcher, _mm)
    patcher = _patcher_type(module, where.compute, where.offload)
    _patchers[module] = patcher
    return patcher


def manage(
    module: nn.Module,
    where: Placement,
    block_swap: int = 0,
    on_unload: Callable[[], None] | None = None,
) -> None:
    """Put a loaded module under ComfyUI's memory manager (standalone: apply ``block_swap`` now).

    ``block_swap``: the user's manual count of streamed DiT blocks; 0 = as many as the memory
    the manager grants requires. ``on_unload``: a bound method called whenever the manager
    unloads the module (held weakly: the module must not keep its owner alive).
    """
    if not IN_COMFYUI:
        from .comfy_patcher import swappable, swapped_blocks

        if swappable(module) and swapped_blocks(module) != block_swap:
            module.set_block_swap(block_swap, where.offload)  # type: ignore[operator]
        return
    patcher = _patcher(module, where)
    patcher.block_swap_override = block_swap or None
    if on_unload is not None and all(ref() != on_unload for ref in patcher.on_unload):
        patcher.on_unload.append(weakref.WeakMethod(on_unload))  # type: ignore[arg-type]


def use_models(modules: Sequence[nn.Module], run_bytes: Estimate, where: Placement | None = None) -> None:
    """Before a run: ComfyUI's manager loads ``modules`` (evicting others as it sees fit) for a run
    that needs ``run_bytes()`` of device memory besides the weights. Standalone: nothing to do.

    Modules not yet managed are registered with ``where`` (default: a diffusion model's devices).
    """
    if IN_COMFYUI:
        _load(modules, run_bytes(), where)


def _load(modules: Sequence[nn.Module], run_bytes: int, where: Placement | None) -> None:
    patchers = [_patcher(m, where or placement("diffusion")) for m in modules]
    for patcher in patchers:
        patcher.run_bytes = run_bytes
    _mm.load_models_gpu(patchers, memory_required=run_bytes)  # it frees room for the whole models first


class _ManagerHost:
    """wan_core's ModelHost inside ComfyUI: each model goes through :func:`use_models` right before it runs."""

    def __init__(self, run_bytes: Estimate, where: Placement | None) -> None:
        self.run_bytes, self.where = run_bytes, where
        self._bytes: int | None = None

    def activate(self, model: Any) -> None:
        module = getattr(model, "local", model)  # a multi-GPU stand-in computes with rank 0's copy
        if isinstance(module, nn.Module):
            if self._bytes is None:
                self._bytes = self.run_bytes()
            _load([module], self._bytes, self.where)


def model_host(run_bytes: Estimate, where: Placement | None = None) -> ModelHost | None:
    """The ModelHost for wan_core calls that run models (None standalone: they keep their own offload)."""
    return _ManagerHost(run_bytes, where) if IN_COMFYUI else None


def memory_report() -> dict[str, Any]:
    """ComfyUI's loaded models (ours marked), this process's RSS and CUDA allocator counters (bytes)."""
    import psutil

    models = []
    for loaded in list(_mm.current_loaded_models) if IN_COMFYUI else []:
        patcher = loaded.model
        module = getattr(patcher, "model", None) if patcher is not None else None
        models.append(
            {
                "name": type(module).__name__,
                "ours": module is not None and _patchers.get(module) is patcher,
                "device": str(loaded.device),
                "size": int(loaded.model_memory()) if patcher is not None else 0,
                "loaded": int(loaded.model_loaded_memory()) if patcher is not None else 0,
            }
        )
    report: dict[str, Any] = {"loaded_models": models, "rss": psutil.Process().memory_info().rss}
    device = compute_device()
    if device.type == "cuda":
        report["cuda"] = {
            "allocated": torch.cuda.memory_allocated(device),
            "reserved": torch.cuda.memory_reserved(device),
            "max_allocated": torch.cuda.max_memory_allocated(device),
            "max_reserved": torch.cuda.max_memory_reserved(device),
        }
    return report


def _add_memory_route() -> None:
    """GET /wan_core/memory -> :func:`memory_report` (JSON), for checks and benchmarks; ``?reset_peak=1``
    starts a new CUDA peak after reporting."""
    try:
        server = importlib.import_module("server")
        routes = server.PromptServer.instance.routes
        web = importlib.import_module("aiohttp.web")
    except (ImportError, AttributeError):  # no server (e.g. ComfyUI's modules used as a library)
        return

    @routes.get("/wan_core/memory")
    async def _memory(request: Any) -> Any:
        report = memory_report()
        if request.query.get("reset_peak") and compute_device().type == "cuda":
            torch.cuda.reset_peak_memory_stats(compute_device())
        return web.json_response(report)


if IN_COMFYUI:
    _add_memory_route()


# --------------------------------------------------------------------------- progress / interrupt


def _interrupted() -> bool:
    return bool(IN_COMFYUI and _mm.processing_interrupted())


def previews_enabled() -> bool:
    """ComfyUI's ``--preview-method``: unset / ``none`` (its default) sends no previews, as its own samplers
    do (API clients take preview images for outputs); any other method gets our latent-to-RGB preview."""
    if not IN_COMFYUI:
        return False
    cli_args = importlib.import_module("comfy.cli_args")
    return cli_args.args.preview_method != cli_args.LatentPreviewMethod.NoPreviews


def _preview_max_size() -> int:
    args = importlib.import_module("comfy.cli_args").args
    return int(getattr(args, "preview_size", 512) or 512)


def _preview_payload(preview: torch.Tensor | None):
    """RGB [h, w, 3] (uint8 or 0..1) -> ("JPEG", PIL image, max size) for ComfyUI's preview."""
    if preview is None:
        return None
    from PIL import Image

    arr = preview.detach().cpu()
    if arr.dtype != torch.uint8:
        arr = (arr.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return ("JPEG", Image.fromarray(arr.numpy()), _preview_max_size())


def make_hooks(total: int, want_preview: bool = True) -> tuple[RunHooks, Callable[[], None]]:
    """RunHooks wired to ComfyUI's progress bar + live preview + interrupt button (tqdm standalone).

    Previews follow ComfyUI's ``--preview-method`` (:func:`previews_enabled`). Returns (hooks, closer);
    call ``closer()`` when done (closes the tqdm bar).
    """
    if IN_COMFYUI:
        bar = _comfy_utils.ProgressBar(total)
        want_preview = want_preview and previews_enabled()

        def progress(step: int, steps: int, preview: torch.Tensor | None) -> None:
            bar.update_absolute(step, steps, _preview_payload(preview) if want_preview else None)

        return RunHooks(progress=progress, interrupted=_interrupted, want_preview=want_preview), lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc="Wan", leave=False, disable=None)

    def progress(step: int, steps: int, preview: torch.Tensor | None) -> None:
        bar.total = steps
        bar.n = step
        bar.refresh()

    return RunHooks(progress=progress, interrupted=None, want_preview=False), bar.close


@contextlib.contextmanager
def comfy_errors() -> Iterator[None]:
    """Map WanInterrupted to ComfyUI's interrupt exception (shown as "interrupted", not an error)."""
    try:
        yield
    except WanInterrupted:
        if IN_COMFYUI:
            _mm.throw_exception_if_processing_interrupted()  # clears ComfyUI's flag, then raises
            raise _mm.InterruptProcessingException() from None
        raise
