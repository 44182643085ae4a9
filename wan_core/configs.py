"""Per-task sampling defaults and default negative prompts (WAN_SPEC 7.5).

The values are those of the official Wan2.1 / Wan2.2 CLIs (``generate.py`` + ``wan/configs``);
where the official repositories ship no such model (Fun-Control, Wan2.2 VACE) the entry says
which official task it borrows from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .errors import InputError

Guidance = float | tuple[float, float]

# The shared official negative prompt (Wan2.1 and Wan2.2 configs/shared_config.py).
NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
# Wan2.1 I2V prepends "camera shake"; Wan2.1 FLF2V prepends "shot change" to the I2V string.
I2V_NEGATIVE_PREFIX = "镜头晃动，"
FLF2V_NEGATIVE_PREFIX = "镜头切换，"
I2V_NEGATIVE_PROMPT = I2V_NEGATIVE_PREFIX + NEGATIVE_PROMPT
FLF2V_NEGATIVE_PROMPT = FLF2V_NEGATIVE_PREFIX + I2V_NEGATIVE_PROMPT


@dataclass(frozen=True)
class TaskDefaults:
    """Official sampling defaults of one model/task.

    ``cfg`` is a ``(low_noise, high_noise)`` pair for the Wan2.2 A14B experts (the official
    tuple order); ``frames`` are pixel frames (4n+1) at ``fps``; ``width``/``height`` in pixels.
    """

    steps: int
    shift: float
    cfg: Guidance
    frames: int
    fps: int
    width: int
    height: int
    solver: str = "unipc"


_T2V = TaskDefaults(steps=50, shift=5.0, cfg=5.0, frames=81, fps=16, width=832, height=480)
_DEFAULTS: dict[tuple[str, str], TaskDefaults] = {
    ("wan2.1", "t2v"): _T2V,
    ("wan2.1", "t2i"): replace(_T2V, frames=1, width=1024, height=1024),
    # I2V: shift 5 at 720p (the CLI default size), 3 at 480p (see _resolution_overrides)
    ("wan2.1", "i2v"): replace(_T2V, steps=40, width=1280, height=720),
    ("wan2.1", "flf2v"): replace(_T2V, shift=16.0, width=1280, height=720),
    ("wan2.1", "vace"): replace(_T2V, shift=16.0),
    ("wan2.1", "fun-control"): _T2V,  # no official Fun code: T2V defaults
    ("wan2.1", "fun-camera"): _T2V,
    ("wan2.2", "t2v"): TaskDefaults(steps=40, shift=12.0, cfg=(3.0, 4.0), frames=81, fps=16, width=1280, height=720),
    ("wan2.2", "i2v"): TaskDefaults(steps=40, shift=5.0, cfg=(3.5, 3.5), frames=81, fps=16, width=1280, height=720),
    ("wan2.2", "ti2v"): TaskDefaults(steps=50, shift=5.0, cfg=5.0, frames=121, fps=24, width=1280, height=704),
}
# Two-expert (A14B) models the official repositories do not ship: borrow the nearest A14B task.
_DEFAULTS[("wan2.2", "flf2v")] = _DEFAULTS[("wan2.2", "i2v")]
_DEFAULTS[("wan2.2", "fun-control")] = _DEFAULTS[("wan2.2", "i2v")]
_DEFAULTS[("wan2.2", "fun-camera")] = _DEFAULTS[("wan2.2", "i2v")]
_DEFAULTS[("wan2.2", "vace")] = _DEFAULTS[("wan2.2", "t2v")]

_TASK_ALIASES = {
    "fun-inp": "i2v",
    "fun_inp": "i2v",
    "fun_control": "fun-control",
    "fun_camera": "fun-camera",
    "image": "t2i",
}
_RESOLUTIONS = {"480p": (832, 480), "720p": (1280, 720), "704p": (1280, 704)}
_MODEL_SIZES = {"1.3b": "480p", "14b": "720p", "a14b": "720p", "5b": "704p"}


def _key(family: str, task: str) -> tuple[str, str]:
    fam = family.strip().lower().replace("wan21", "wan2.1").replace("wan22", "wan2.2")
    t = task.strip().lower()
    return fam, _TASK_ALIASES.get(t, t)


def _parse_size(label: str) -> tuple[int, int] | None:
    """'480p' / '720p' / '832*480' / '832x480' -> (width, height); model sizes ('1.3b') -> their resolution."""
    text = label.strip().lower()
    if text in _MODEL_SIZES:
        res = _MODEL_SIZES[text]
        return _RESOLUTIONS[res]
    if text in _RESOLUTIONS:
        return _RESOLUTIONS[text]
    match = re.fullmatch(r"(\d+)\s*[*x×]\s*(\d+)", text)
    if match:
        return int(match.group(1)), int(match.group(2))
    raise InputError(
        f"Unknown size label {label!r}; use a model size (1.3b, 14b, a14b, 5b), "
        "a resolution (480p, 720p, 704p) or WIDTH*HEIGHT."
    )


def defaults_for(family: str, task: str, size_label: str | None = None) -> TaskDefaults:
    """Official defaults for (family, task), refined by a model size or resolution label."""
    key = _key(family, task)
    if key not in _DEFAULTS:
        known = ", ".join(f"{f} {t}" for f, t in sorted(_DEFAULTS))
        raise InputError(f"No sampling defaults for {family} {task}; known: {known}.")
    base = _DEFAULTS[key]
    size = _parse_size(size_label) if size_label else None
    if size is None:
        return base
    width, height = size
    out = replace(base, width=width, height=height)
    if key == ("wan2.1", "i2v") and width * height <= 832 * 480:
        out = replace(out, shift=3.0)  # the official CLI's 480p I2V shift
    return out


def default_negative_prompt(family: str, task: str) -> str:
    """The official negative prompt used when the user leaves it empty (Wan2.1 I2V/FLF2V add a prefix)."""
    fam, t = _key(family, task)
    if fam == "wan2.1" and t == "flf2v":
        return FLF2V_NEGATIVE_PROMPT
    if fam == "wan2.1" and t == "i2v":
        return I2V_NEGATIVE_PROMPT
    return NEGATIVE_PROMPT
