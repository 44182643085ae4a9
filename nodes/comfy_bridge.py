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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from wan_core.errors import InputError, WanInterrupted
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


def offload_device() -> torch.device:
    if IN_COMFYUI:
        return _mm.unet_offload_device()
    return torch.device("cpu")


def free_comfy_models() -> None:
    """Ask ComfyUI to unload its own models so ours fit (no-op standalone and on CPU)."""
    if IN_COMFYUI and _mm.get_torch_device().type != "cpu":
        _mm.unload_all_models()
        _mm.soft_empty_cache()


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
