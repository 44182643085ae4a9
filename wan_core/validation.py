"""The single-value checks run before any model: numbers, sizes, text, pixel tensors, files, the output path.

Used by every layer that takes a value from a user (requests, conditioning, LoRA stacks, ``SamplerSettings``,
``write_video``, the CLI), so the nodes, the pipeline and the CLI share one set of rules; the pass over a whole
generation request is :mod:`wan_core.request_checks`. Every error is an
:class:`~wan_core.errors.InputError` (or subclass) that names the setting the way the user
typed it (:class:`Names`: ``--cfg`` on the command line, ``cfg`` in Python), what was found,
what is allowed, and what to do. Checks that need the model (what it can use, how large a
video it can make) live in :mod:`wan_core.model_fit`.
"""

from __future__ import annotations

import math
import numbers
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError, NonFiniteError, OutputError
from .finite import all_finite

VIDEO_SUFFIXES = (".mp4", ".webp")


@dataclass(frozen=True)
class Names:
    """How each setting is called where the user typed it (API parameter name -> shown name)."""

    table: Mapping[str, str]

    def __call__(self, name: str) -> str:
        return self.table.get(name, name)


API_NAMES = Names({"size": "width/height"})
CLI_NAMES = Names(
    {
        "prompt": "--prompt",
        "negative_prompt": "--negative-prompt",
        "frames": "--frames",
        "width": "--size (width)",
        "height": "--size (height)",
        "size": "--size",
        "steps": "--steps",
        "cfg": "--cfg",
        "shift": "--shift",
        "solver": "--solver",
        "seed": "--seed",
        "fps": "--fps",
        "vace_strength": "--vace-strength",
        "image": "--image",
        "last_image": "--last-image",
        "control_video": "--control-video",
        "control_mask": "--control-mask",
        "reference_images": "--reference-image",
        "model": "--model",
        "model_low": "--model-low",
        "vae": "--vae",
        "text_encoder": "--text-encoder",
        "tokenizer": "--tokenizer",
        "clip_vision": "--clip-vision",
        "lora": "--lora",
        "lora_strength": "--lora strength",
        "out": "--out",
        "directory": "DIRECTORY",
        "models_dir": "--models-dir",
        "device": "--device",
        "dtype": "--dtype",
        "camera": "--camera",
    }
)


# ---------------------------------------------------------------------------------------- numbers


@dataclass(frozen=True)
class Range:
    """Allowed values of one numeric setting; ``why`` says where the bound comes from."""

    low: float
    high: float
    integer: bool = False
    low_open: bool = False
    why: str = ""

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        left = f"above {self.low:g}" if self.low_open else f"at least {self.low:g}"
        return f"{'a whole number ' if self.integer else ''}{left} and at most {self.high:g}"


RANGES: dict[str, Range] = {
    # no upper size bound here: wan_core.model_fit refuses sizes beyond the rotary table or free memory
    "frames": Range(1, 2**31 - 1, integer=True, why="4n+1 pixel frames"),
    "width": Range(1, 2**31 - 1, integer=True),
    "height": Range(1, 2**31 - 1, integer=True),
    "steps": Range(1, 1000, integer=True, why="the flow schedule has 1000 training timesteps"),
    "cfg": Range(0.0, 100.0, why="released models use 1 to 7"),
    "shift": Range(0.0, 1000.0, low_open=True, why="released models use 1 to 17"),
    "seed": Range(0, 2**64 - 1, integer=True),
    "fps": Range(0.1, 240.0, why="H.264 players handle up to 240"),
    "vace_strength": Range(0.0, 10.0, why="the official context scale is 1"),
    "boundary": Range(0.0, 1000.0, low_open=True, why="0..1 as a ratio, or the 0..1000 timestep scale"),
    "denoise": Range(0.0, 1.0, low_open=True),
    "lora_strength": Range(-100.0, 100.0, why="ComfyUI's LoRA loader bound"),
    "batch_size": Range(1, 4096, integer=True),
}


def _as_number(value: Any, shown: str, integer: bool) -> float | int:
    """A plain Python number from ints, floats and numpy/torch scalars; InputError for anything else."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "a whole number" if integer else "a number"
        raise InputError(f"{shown} must be {kind}; got {value!r} ({type(value).__name__}).")
    if integer and not float(value).is_integer():
        raise InputError(f"{shown} must be a whole number; got {value!r}: use {math.floor(value)}.")
    if not integer:
        return float(value)
    return int(value) if isinstance(value, numbers.Integral) else int(float(value))  # seeds need exact ints


def check_number(value: Any, name: str, names: Names = API_NAMES) -> float | int:
    """``value`` as int/float after checking it is finite and within RANGES[name]."""
    spec, shown = RANGES[name], names(name)
    if isinstance(value, float) and not math.isfinite(value) or _nonfinite_scalar(value):
        raise NonFiniteError(
            f"{shown} is {value!r}, which is not a finite number; give {spec.describe()}"
            + (f" ({spec.why})." if spec.why else ".")
        )
    number = _as_number(value, shown, spec.integer)
    if not spec.contains(number):
        raise InputError(
            f"{shown} is {number:g} but must be {spec.describe()}" + (f" ({spec.why})." if spec.why else ".")
        )
    return number


def _nonfinite_scalar(value: Any) -> bool:
    try:
        return isinstance(value, (np.floating, torch.Tensor)) and not math.isfinite(float(value))
    except (TypeError, ValueError, RuntimeError):
        return False


def check_cfg(value: Any, names: Names = API_NAMES) -> float | tuple[float, float]:
    """One guidance scale, or a (low_noise, high_noise) pair of them."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InputError(
                f"{names('cfg')} takes one number or a (low_noise, high_noise) pair; got {len(value)} values."
            )
        return (check_number(value[0], "cfg", names), check_number(value[1], "cfg", names))
    return check_number(value, "cfg", names)


def check_frames(frames: Any, names: Names = API_NAMES) -> int:
    """A pixel frame count of the form 4n+1 (the VAE packs 4 frames per latent frame after the first)."""
    frames = int(check_number(frames, "frames", names))
    if (frames - 1) % 4:
        lower = (frames - 1) // 4 * 4 + 1
        raise InputError(
            f"{names('frames')} must be 4n+1 (1, 5, 9, ..., 81); got {frames}: use {lower} or {lower + 4}."
        )
    return frames


def check_size(width: int, height: int, frames: int, multiple: int, names: Names = API_NAMES) -> None:
    """Pixel sizes must be positive multiples of VAE stride x patch (16 Wan2.1, 32 Wan2.2 VAE); frames 4n+1."""
    check_size_multiple(width, height, multiple, names)
    check_frames(frames, names)


def check_size_multiple(width: int, height: int, multiple: int, names: Names = API_NAMES) -> tuple[int, int]:
    """(width, height) as ints when both are positive multiples of ``multiple`` = VAE stride x patch size."""
    width, height = int(width), int(height)
    for name, value in (("width", width), ("height", height)):
        if value < multiple:
            raise InputError(
                f"{names(name)} is {value} but must be at least {multiple} (one latent patch: VAE stride x patch "
                f"size) and a multiple of {multiple}: use e.g. {max(multiple, 480 // multiple * multiple)}."
            )
    if width % multiple or height % multiple:
        fixed = f"{width // multiple * multiple}x{height // multiple * multiple}"
        raise InputError(
            f"Size {width}x{height} is not a multiple of {multiple} (VAE stride x patch size): use e.g. {fixed}."
        )
    return width, height


# ---------------------------------------------------------------------------------------- text


def check_text(value: Any, name: str, names: Names = API_NAMES, optional: bool = False) -> str | None:
    """A prompt: a str that is valid Unicode (lone surrogates come from non-UTF-8 bytes on a command line)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise InputError(f"{names(name)} must be text (str); got {type(value).__name__}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{names(name)} is not valid UTF-8 text (undecodable byte at character {exc.start}): save or type "
            "the prompt as UTF-8, or pass it through a UTF-8 terminal/locale."
        ) from None
    return value


# ---------------------------------------------------------------------------------------- settings


# ---------------------------------------------------------------------------------------- tensors

# name -> (dims with the optional leading batch, what it is)
TENSOR_INPUTS: dict[str, tuple[int, str]] = {
    "image": (4, "[1, H, W, 3]"),
    "last_image": (4, "[1, H, W, 3]"),
    "control_video": (4, "[F, H, W, 3]"),
    "control_mask": (3, "[F, H, W]"),
    "reference_images": (4, "[N, H, W, 3]"),
}
RANGE_SLACK = 1e-3  # resampling overshoot that rounds away


def check_pixels(value: Any, name: str, names: Names = API_NAMES) -> torch.Tensor:
    """A float 0..1 pixel tensor of the layout TENSOR_INPUTS[name] (numpy arrays are accepted)."""
    dims, layout = TENSOR_INPUTS[name]
    shown = names(name)
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{shown} must be a float tensor {layout} in 0..1; got {type(value).__name__}.")
    if value.ndim == dims - 1:
        value = value[None]
    channels_ok = dims == 3 or value.shape[-1:] in (torch.Size([1]), torch.Size([3]), torch.Size([4]))
    if value.ndim != dims or not channels_ok or 0 in value.shape:
        raise InputError(f"{shown} must be shaped {layout} (channels last); got {tuple(value.shape)}.")
    if not value.dtype.is_floating_point:
        hint = " (divide 8-bit images by 255)" if value.dtype == torch.uint8 else ""
        raise InputError(f"{shown} must be a float tensor in 0..1; got {value.dtype}{hint}.")
    if not all_finite(value):
        raise NonFiniteError(f"{shown} contains NaN/Inf pixels: fix the image or video it came from.")
    low, high = float(value.min()), float(value.max())
    if low < -RANGE_SLACK or high > 1.0 + RANGE_SLACK:
        hint = " (it looks like 0..255: divide by 255)" if high > 2.0 else ""
        raise InputError(f"{shown} must hold values in 0..1; found {low:g}..{high:g}{hint}.")
    return value.clamp(0.0, 1.0) if low < 0.0 or high > 1.0 else value


def check_reference_images(value: Any, names: Names = API_NAMES) -> torch.Tensor | list[torch.Tensor]:
    """VACE references: one [N, H, W, 3] batch, or a list of [1, H, W, 3] images of different sizes."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise InputError(f"{names('reference_images')} is an empty list; pass at least one image or None.")
        return [check_pixels(v, "reference_images", names) for v in value]
    return check_pixels(value, "reference_images", names)


# ---------------------------------------------------------------------------------------- files


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (None when it can): missing, a folder, a device, unreadable."""
    try:
        info = path.stat()
    except ValueError:  # a NUL byte in the name
        return "is not a valid path (it contains a NUL character)"
    except FileNotFoundError:
        parent = next((p for p in path.parents if p.exists()), None)
        where = f" (the nearest existing folder is {parent})" if parent is not None and parent != path.parent else ""
        return f"does not exist{where}"
    except OSError as exc:
        return f"cannot be inspected ({exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file (a device, pipe or socket)"
    if not os.access(path, os.R_OK):
        return "is not readable (check its permissions)"
    return None


def check_input_file(path: Any, name: str, names: Names = API_NAMES) -> Path:
    """A readable regular file; InputError naming the setting and the problem."""
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise InputError(f"{names(name)} must be a file path; got {path!r}.")
    path = Path(path).expanduser()
    problem = file_problem(path)
    if problem:
        raise InputError(f"{names(name)} {str(path)!r} {problem}.")
    return path


def check_output_path(path: Any, names: Names = API_NAMES, suffixes: tuple[str, ...] = VIDEO_SUFFIXES) -> Path:
    """The output file: a known suffix, not a folder or device, in a folder we can create files in.

    Checked before any work, so a typo costs nothing. Missing folders are created at write time.
    """
    shown = names("out")
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise OutputError(f"{shown} must be a file path; got {path!r}.")
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise OutputError(
            f"{shown} {path.name!r} has no video suffix: use a file name ending in {' or '.join(suffixes)}."
        )
    if "\0" in str(path):
        raise OutputError(f"{shown} {str(path)!r} is not a valid path (it contains a NUL character).")
    if path.exists() or path.is_symlink():
        _check_replaceable(path, shown)
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not folder.is_dir():
        raise OutputError(f"{shown} {str(path)!r}: {str(folder)!r} is a file, not a folder; choose another path.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(
            f"{shown} {str(path)!r}: the folder {str(folder)!r} is not writable; choose a folder you can write to."
        )
    return path


def check_folder(path: Any, name: str, names: Names = API_NAMES) -> Path:
    """A folder to write files into: an existing folder, or one that can be created where it is named."""
    shown = names(name)
    if not isinstance(path, (str, os.PathLike)) or not str(path) or "\0" in str(path):
        raise OutputError(f"{shown} must be a folder path; got {path!r}.")
    path = Path(path).expanduser()
    nearest = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not nearest.is_dir():
        raise OutputError(f"{shown} {str(path)!r}: {str(nearest)!r} is not a folder; choose another folder.")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise OutputError(f"{shown} {str(path)!r}: {str(nearest)!r} is not writable; choose another folder.")
    return path


def _check_replaceable(path: Path, shown: str) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        path = path.resolve()
        if not path.exists():
            return
        info = path.stat()
    if stat.S_ISDIR(info.st_mode):
        raise OutputError(f"{shown} {str(path)!r} is a folder; give a file name such as {str(path / 'video.mp4')!r}.")
    if not stat.S_ISREG(info.st_mode):
        raise OutputError(f"{shown} {str(path)!r} is not a regular file (a device or pipe); write to a file instead.")
    if not os.access(path, os.W_OK):
        raise OutputError(f"{shown} {str(path)!r} exists and is read-only; delete it or choose another name.")


# ---------------------------------------------------------------------------------------- the pass


def check_sampler_settings(settings: Any, names: Names = API_NAMES) -> None:
    """The numbers of a SamplerSettings (nodes and pipeline alike): finite and in range."""
    if settings.sigmas is None:
        check_number(settings.steps, "steps", names)
    check_number(settings.shift, "shift", names)
    check_number(settings.denoise, "denoise", names)
    check_number(settings.batch_size, "batch_size", names)
    check_number(settings.seed, "seed", names)
    check_cfg(settings.cfg, names)
