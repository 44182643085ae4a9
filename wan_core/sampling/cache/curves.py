"""Published per-model data (MagCache magnitude ratios, TeaCache coefficients) and how a model finds its own.

The numbers live in ``data/*.json`` next to this file, each with the URL it was read from. A model's
key ("wan2.1-t2v-1.3b", "wan2.2-i2v-a14b", ...) comes from its detected config (never a file name):
Wan2.1 I2V 480p and 720p share their architecture, so the resolution being sampled picks between them.
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import atomic_write_text
from ...errors import InputError

log = logging.getLogger(__name__)

DATA = Path(__file__).with_name("data")
# Latent pixel area from which Wan2.1 I2V counts as its 720p model (between 832x480 and 1280x720).
_I2V_720P_AREA = 640 * 1024


@lru_cache(maxsize=None)
def _load(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def magcache_curve_names() -> list[str]:
    return sorted(_load("magcache_ratios.json")["curves"])


def teacache_names() -> list[str]:
    return sorted(_load("teacache_coefficients.json")["coefficients"])


def model_key(config: Any, pair: bool, latent_hw: tuple[int, int]) -> str:
    """The data key of a DiT: family, task and size (A14B when it is one of two experts)."""
    family = getattr(config, "family", "wan2.1")
    task = getattr(config, "task", "t2v")
    size = getattr(config, "size_label", None)
    if pair:
        return f"wan2.2-{task}-a14b"
    if family == "wan2.2" and task == "ti2v":
        return "wan2.2-ti2v-5b"
    if task == "i2v" and family == "wan2.1":
        area = int(latent_hw[0]) * int(latent_hw[1]) * 64  # VAE stride 8
        return "wan2.1-i2v-720p" if area >= _I2V_720P_AREA else "wan2.1-i2v-480p"
    return f"{family}-{task}-{'14b' if size == '14b' else '1.3b'}"


def _auto(key: str, names: list[str], what: str, fallbacks: dict[str, str]) -> str:
    if key in names:
        return key
    if key in fallbacks and fallbacks[key] in names:
        log.info("%s: no data published for %s; using %s (same architecture).", what, key, fallbacks[key])
        return fallbacks[key]
    raise InputError(
        f"{what} has no published data for {key}: choose one explicitly ({', '.join(names)})"
        + (" or calibrate this model (MagCache 'calibrate')." if what == "MagCache" else ", or use EasyCache.")
    )


def magcache_ratios(curve: str, key: str) -> tuple[str, np.ndarray]:
    """(curve name, interleaved cond/uncond ratios [2·steps]) for ``curve`` ("auto" = from ``key``)."""
    names = magcache_curve_names()
    name = _auto(key, names, "MagCache", {"wan2.1-vace-14b": "wan2.1-t2v-14b"}) if curve == "auto" else curve
    if name not in names:
        raise InputError(f"Unknown MagCache curve {curve!r}; use 'auto' or one of {', '.join(names)}.")
    return name, np.asarray(_load("magcache_ratios.json")["curves"][name]["ratios"], dtype=np.float64)


def teacache_coefficients(name: str, key: str, embedding: str) -> tuple[str, list[float]]:
    """(set name, polynomial coefficients, highest power first) for ``name`` ("auto" = from ``key``)."""
    names = teacache_names()
    fallbacks = {"wan2.1-vace-1.3b": "wan2.1-t2v-1.3b", "wan2.1-vace-14b": "wan2.1-t2v-14b"}
    chosen = _auto(key, names, "TeaCache", fallbacks) if name == "auto" else name
    if chosen not in names:
        raise InputError(f"Unknown TeaCache coefficients {name!r}; use 'auto' or one of {', '.join(names)}.")
    return chosen, list(_load("teacache_coefficients.json")["coefficients"][chosen][embedding])


def nearest_interp(values: np.ndarray, length: int) -> np.ndarray:
    """Resample a per-step curve to ``length`` steps by nearest index, as the MagCache authors do."""
    if length == 1:
        return values[-1:].copy()
    scale = (len(values) - 1) / (length - 1)
    return values[np.round(np.arange(length) * scale).astype(int)]


def ratios_for_steps(ratios: np.ndarray, steps: int) -> np.ndarray:
    """Interleaved cond/uncond ratios [2·steps]: as given, or each branch resampled to ``steps``."""
    if len(ratios) == 2 * steps:
        return ratios
    cond, uncond = nearest_interp(ratios[0::2], steps), nearest_interp(ratios[1::2], steps)
    return np.stack([cond, uncond], axis=1).reshape(-1)


def load_calibration(path: str | os.PathLike) -> tuple[float, ...]:
    """The ratios of a calibration file written by :func:`save_calibration`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        ratios = tuple(float(r) for r in data["ratios"])
    except FileNotFoundError:
        raise InputError(f"MagCache calibration file {path} does not exist; run once with 'calibrate'.") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is not a MagCache calibration file ({exc}); calibrate again.") from None
    return ratios


def save_calibration(path: str | os.PathLike, ratios: list[float], meta: dict[str, Any]) -> Path:
    """Write ``{"ratios": [...], **meta}`` to ``path`` atomically (``wan_core.atomic``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps({**meta, "ratios": [round(float(r), 5) for r in ratios]}, indent=1))
