"""What the user chooses: one frozen settings object per step-caching method.

The nodes and the CLI only build these; :mod:`wan_core.sampling.cache.run` turns them into the
per-run strategy the sampling loop calls. Each class carries a ``method`` name so that a settings
object survives ``dataclasses.asdict`` (the pipeline stores the resolved settings as metadata) and
:func:`cache_from_dict` can rebuild it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Union

from ...errors import InputError

EASYCACHE_MODES = ("comfyui", "paper")
TEACACHE_EMBEDDINGS = ("e0", "e")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise InputError(f"{name} must lie in [0, 1], got {value}.")


def _check_threshold(name: str, value: float) -> None:
    if float(value) < 0.0:
        raise InputError(f"{name} must be >= 0 (0 turns reuse off), got {value}.")


@dataclass(frozen=True)
class EasyCacheSettings:
    """EasyCache (Zhou et al. 2025, arXiv:2507.02860): reuse the last transformation (output − input)
    while the accumulated estimate of the relative output change stays below ``reuse_threshold``.

    ``start_percent`` / ``end_percent``: the share of the (shifted) schedule, as in ComfyUI's node
    (σ = shift(1 − percent)), where reuse may happen. ``mode``: "comfyui" decides exactly as ComfyUI's
    native EasyCache node (inputs and outputs subsampled 8× in h and w, input change measured from the
    last computed step, output norm of the forward that holds the positive prompt); "paper" as the
    authors' Wan code (full resolution, per-step input increments, norm of the positive output).
    """

    reuse_threshold: float = 0.2
    start_percent: float = 0.15
    end_percent: float = 0.95
    mode: str = "comfyui"
    method: str = field(default="easycache", init=False)

    def __post_init__(self) -> None:
        _check_threshold("reuse_threshold", self.reuse_threshold)
        _check_fraction("start_percent", self.start_percent)
        _check_fraction("end_percent", self.end_percent)
        if self.mode not in EASYCACHE_MODES:
            raise InputError(f"EasyCache mode must be one of {', '.join(EASYCACHE_MODES)}, got {self.mode!r}.")


@dataclass(frozen=True)
class MagCacheSettings:
    """MagCache (Ma et al. 2025, arXiv:2506.09045): skip the DiT blocks (reuse their residual) while the
    accumulated magnitude-ratio error stays below ``threshold`` and at most ``k`` steps in a row.

    ``retention``: share of the first DiT calls that always run. ``curve``: a published curve name
    (see :func:`wan_core.sampling.cache.curves.magcache_curve_names`) or "auto" (from the model);
    ``ratios`` (interleaved cond/uncond per step, as published) overrides it, e.g. from a calibration
    file. ``calibrate``: a JSON path: run every step, record this model's ratios and save them there.
    """

    threshold: float = 0.12
    k: int = 2
    retention: float = 0.2
    curve: str = "auto"
    ratios: tuple[float, ...] | None = None
    calibrate: str | None = None
    method: str = field(default="magcache", init=False)

    def __post_init__(self) -> None:
        _check_threshold("magcache threshold", self.threshold)
        _check_fraction("retention", self.retention)
        if int(self.k) < 0:
            raise InputError(f"MagCache K (most skipped steps in a row) must be >= 0, got {self.k}.")
        if self.ratios is not None and (len(self.ratios) < 2 or len(self.ratios) % 2):
            raise InputError(
                f"MagCache ratios must hold an even number (>= 2) of values, one cond and one uncond per step; "
                f"got {len(self.ratios)}."
            )


@dataclass(frozen=True)
class TeaCacheSettings:
    """TeaCache (Liu et al. 2024, arXiv:2411.19108): skip the DiT blocks while the accumulated,
    polynomially rescaled relative L1 change of the timestep embedding stays below ``threshold``.

    ``embedding``: "e0" (the official ``--use_ret_steps``: the 6-way projection, 5 retention steps) or
    "e" (the time embedding, 1 retention step, last step computed). ``coefficients``: a published set
    (see :func:`wan_core.sampling.cache.curves.teacache_names`) or "auto" (from the model).
    """

    threshold: float = 0.2
    embedding: str = "e0"
    coefficients: str = "auto"
    method: str = field(default="teacache", init=False)

    def __post_init__(self) -> None:
        _check_threshold("teacache threshold", self.threshold)
        if self.embedding not in TEACACHE_EMBEDDINGS:
            raise InputError(f"TeaCache embedding must be 'e0' or 'e', got {self.embedding!r}.")


CacheSettings = Union[EasyCacheSettings, MagCacheSettings, TeaCacheSettings]
CACHE_CLASSES: dict[str, type] = {
    "easycache": EasyCacheSettings,
    "magcache": MagCacheSettings,
    "teacache": TeaCacheSettings,
}


def cache_from_dict(data: Any) -> CacheSettings | None:
    """A settings object back from ``dataclasses.asdict`` output (or the object itself, or None)."""
    if data is None or isinstance(data, tuple(CACHE_CLASSES.values())):
        return data
    if not isinstance(data, dict) or data.get("method") not in CACHE_CLASSES:
        raise InputError(f"Unknown cache settings {data!r}; use one of {', '.join(CACHE_CLASSES)}.")
    cls = CACHE_CLASSES[data["method"]]
    kwargs = {f.name: data[f.name] for f in fields(cls) if f.init and f.name in data}
    if kwargs.get("ratios") is not None:
        kwargs["ratios"] = tuple(float(r) for r in kwargs["ratios"])
    return cls(**kwargs)


def parse_cache_spec(text: str) -> CacheSettings:
    """A cache from one command-line word: ``METHOD[:THRESHOLD][,key=value...]``.

    ``easycache``, ``easycache:0.1``, ``magcache:0.12,k=2,retention=0.2``, ``magcache:curve=my_model.json``
    (a calibration file), ``magcache:calibrate=out.json``, ``teacache:0.2,embedding=e``. Keys are the
    settings' field names; a bare number is the method's threshold.
    """
    method, _, rest = str(text).partition(":")
    cls = CACHE_CLASSES.get(method.strip().lower())
    if cls is None:
        raise InputError(f"Unknown cache {method!r}; use one of {', '.join(CACHE_CLASSES)} (e.g. easycache:0.2).")
    defaults = {f.name: f.default for f in fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            key, value = next(iter(defaults)), key  # the first field is the threshold
        kwargs.update(_spec_value(cls, defaults, key.strip(), value.strip()))
    return cls(**kwargs)


def _spec_value(cls: type, defaults: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    if cls is MagCacheSettings and key == "curve" and value.endswith(".json"):
        from .curves import load_calibration

        return {"ratios": load_calibration(value)}
    if key not in defaults or key in ("ratios",):
        raise InputError(
            f"{cls.__name__} has no option {key!r}; use {', '.join(k for k in defaults if k != 'ratios')}."
        )
    default = defaults[key]
    try:
        return {key: type(default)(value) if isinstance(default, (int, float)) else value}
    except ValueError:
        raise InputError(f"{key} must be a {type(default).__name__}, got {value!r}.") from None
