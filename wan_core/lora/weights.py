"""Reading a LoRA file into format-independent :class:`LoraDelta` records.

Math (WAN_SPEC 9.2): ``ΔW = scale · (up @ down)`` with ``down`` [r, in(, k...)],
``up`` [out, r(, 1...)], ``scale = alpha / r`` (``alpha / sqrt(r)`` for rsLoRA) or 1
when no alpha is known; ``.diff`` is a full ΔW, ``.diff_b`` a bias difference.
The merged weight is ``W + strength · ΔW``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, Union

import torch

from ..checkpoints import CheckpointInput, guess_kind, open_checkpoint
from ..errors import CheckpointError, LoraError, NonFiniteError, preview_keys
from ..finite import check_finite
from ..tensor_source import TensorSource
from .keys import UNSUPPORTED_MARKERS, ParsedKey, diffusers_to_official_path, looks_diffusers, parse_key
from .lycoris import LOHA_PARTS, LOKR_PARTS, lycoris_delta, lycoris_kind, lycoris_scale, lycoris_shape

log = logging.getLogger(__name__)


Part = TypeVar("Part", torch.Tensor, dict[str, torch.Tensor])


@dataclass(frozen=True)
class LoraDelta:
    """One change to one model parameter.

    * ``kind`` "lowrank": ``scale · up @ down`` (+ ``scale · up_bias`` on the bias);
      "diff": ``diff`` added to the weight (or to a bare parameter such as
      ``blocks.N.modulation``); "diff_b": ``diff`` added to the bias; "loha" /
      "lokr": LyCORIS ``factors`` (see :mod:`wan_core.lora.lycoris`).
    * ``path``: official module path (``blocks.0.self_attn.q``), or an underscored
      path (``blocks_0_self_attn_q``) when ``underscored``; resolved against the
      model's own names when applied.
    """

    path: str
    kind: str
    key: str
    underscored: bool = False
    down: torch.Tensor | None = None
    up: torch.Tensor | None = None
    up_bias: torch.Tensor | None = None
    diff: torch.Tensor | None = None
    scale: float = 1.0
    factors: dict[str, torch.Tensor] | None = None

    @property
    def rank(self) -> int:
        return 0 if self.down is None else int(self.down.shape[0])

    def part(self, value: Part | None, name: str) -> Part:
        """A tensor (or LyCORIS factor dict) this ``kind`` must carry; LoraError names the missing one."""
        if value is None:
            raise LoraError(f"LoRA key {self.key!r} ({self.kind}) has no {name}: the file is incomplete.")
        return value

    def weight_delta(self, device: torch.device | str, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """ΔW in fp32 on ``device``, reshaped to the target parameter's ``shape`` (strength not applied)."""
        if self.kind == "lowrank":
            up = self.part(self.up, "up").to(device=device, dtype=torch.float32).flatten(1)
            down = self.part(self.down, "down").to(device=device, dtype=torch.float32).flatten(1)
            return (up @ down).mul_(self.scale).reshape(shape)
        if self.kind in ("loha", "lokr"):
            factors = self.part(self.factors, "factors")
            return lycoris_delta(self.kind, factors, device).mul_(self.scale).reshape(shape)
        return self.part(self.diff, "diff").to(device=device, dtype=torch.float32).reshape(shape)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor this delta holds, by role (for checks)."""
        named = {"down": self.down, "up": self.up, "up_bias": self.up_bias, "diff": self.diff, **(self.factors or {})}
        return {role: t for role, t in named.items() if t is not None}

    def delta_shape(self) -> tuple[int, ...]:
        """Shape of ΔW as stored (lowrank: [out, in·k...]), for shape checks."""
        if self.kind == "lowrank":
            up, down = self.part(self.up, "up"), self.part(self.down, "down")
            return (int(up.shape[0]), int(math.prod(down.shape[1:])))
        if self.kind in ("loha", "lokr"):
            return lycoris_shape(self.kind, self.part(self.factors, "factors"))
        return tuple(self.part(self.diff, "diff").shape)


@dataclass
class LoraWeights:
    """A loaded LoRA: its deltas plus what was recognised but not used."""

    deltas: list[LoraDelta]
    ignored: list[str] = field(default_factory=list)
    name: str = "LoRA"
    rslora: bool = False

    def __len__(self) -> int:
        return len(self.deltas)

    def targets(self) -> list[str]:
        return [d.path for d in self.deltas]


# What load_lora / apply_lora accept: a file, shards, a folder, a state dict, or weights already read.
LoraInput = Union[CheckpointInput, LoraWeights]


@dataclass(frozen=True)
class PeftSettings:
    """Adapter-wide settings from PEFT/diffusers metadata (files without ``.alpha`` keys)."""

    lora_alpha: float | None = None
    use_rslora: bool = False


def _settings_from_dict(cfg: Mapping) -> PeftSettings:
    alpha, rs = None, False
    for key, value in cfg.items():
        leaf = str(key).rsplit(".", 1)[-1]
        if leaf == "lora_alpha" and value is not None:
            alpha = float(value)
        elif leaf == "use_rslora":
            rs = bool(value)
    return PeftSettings(alpha, rs)


def peft_settings(src: TensorSource, path: Path | None) -> PeftSettings:
    """lora_alpha / use_rslora from diffusers' safetensors metadata or a PEFT adapter_config.json."""
    raw = src.metadata.get("lora_adapter_metadata")
    if raw:
        try:
            return _settings_from_dict(json.loads(raw))
        except (ValueError, AttributeError):
            log.warning("LoRA metadata 'lora_adapter_metadata' is not valid JSON; ignored.")
    if path is not None:
        cfg_file = (path if path.is_dir() else path.parent) / "adapter_config.json"
        if cfg_file.is_file():
            return _settings_from_dict(json.loads(cfg_file.read_text()))
    return PeftSettings()


def _group_keys(keys: list[str]) -> tuple[dict[tuple[str, bool], dict[str, ParsedKey]], list[str]]:
    groups: dict[tuple[str, bool], dict[str, ParsedKey]] = {}
    ignored: list[str] = []
    parsed = [(k, parse_key(k)) for k in keys]
    dotted = [p.path for _, p in parsed if p is not None and not p.underscored]
    rename = looks_diffusers(dotted)
    for key, p in parsed:
        if p is None:
            ignored.append(key)
            continue
        path = diffusers_to_official_path(p.path) if (rename and not p.underscored) else p.path
        parts = groups.setdefault((path, p.underscored), {})
        if p.part in parts:
            raise LoraError(
                f"LoRA keys {parts[p.part].key!r} and {key!r} both give the {p.part} of {path!r}: "
                "the file mixes two layouts. Re-export it in one layout."
            )
        parts[p.part] = p
    return groups, ignored


def _scale(alpha: float | None, rank: int, settings: PeftSettings) -> float:
    if alpha is None:
        alpha = settings.lora_alpha
    if alpha is None:
        return 1.0
    return alpha / (math.sqrt(rank) if settings.use_rslora else rank)


def _lowrank(path: str, und: bool, parts: dict[str, ParsedKey], src: TensorSource, settings: PeftSettings) -> LoraDelta:
    down, up = src[parts["down"].key], src[parts["up"].key]
    if down.shape[0] != up.shape[1]:
        raise LoraError(
            f"LoRA {parts['down'].key!r} has rank {down.shape[0]} but {parts['up'].key!r} has "
            f"{up.shape[1]} (shapes {tuple(down.shape)} and {tuple(up.shape)}): the file is corrupt. "
            "Re-download or re-export it."
        )
    alpha = float(src[parts["alpha"].key].float().reshape(-1)[0]) if "alpha" in parts else None
    up_bias = src[parts["up_bias"].key] if "up_bias" in parts else None
    return LoraDelta(
        path,
        "lowrank",
        parts["down"].key,
        und,
        down=down,
        up=up,
        up_bias=up_bias,
        scale=_scale(alpha, int(down.shape[0]), settings),
    )


def _lycoris(kind: str, path: str, und: bool, parts: dict[str, ParsedKey], src: TensorSource) -> LoraDelta:
    names = LOHA_PARTS if kind == "loha" else LOKR_PARTS
    factors = {n: src[parts[n].key] for n in names if n in parts}
    alpha = float(src[parts["alpha"].key].float().reshape(-1)[0]) if "alpha" in parts else None
    key = parts[next(n for n in names if n in parts)].key
    return LoraDelta(path, kind, key, und, factors=factors, scale=lycoris_scale(kind, factors, alpha))


def _deltas_of_group(
    path: str, und: bool, parts: dict[str, ParsedKey], src: TensorSource, settings: PeftSettings, ignored: list[str]
) -> list[LoraDelta]:
    out: list[LoraDelta] = []
    kind = lycoris_kind(parts)
    if "down" in parts and "up" in parts:
        out.append(_lowrank(path, und, parts, src, settings))
    elif kind is not None:
        out.append(_lycoris(kind, path, und, parts, src))
    else:
        ignored.extend(p.key for name, p in parts.items() if name not in ("diff", "diff_b"))
    if "diff" in parts:
        out.append(LoraDelta(path, "diff", parts["diff"].key, und, diff=src[parts["diff"].key]))
    if "diff_b" in parts:
        out.append(LoraDelta(path, "diff_b", parts["diff_b"].key, und, diff=src[parts["diff_b"].key]))
    return out


def load_lora(path_or_state_dict: LoraInput, *, rslora: bool | None = None, alpha: float | None = None) -> LoraWeights:
    """Read a LoRA in any supported format (see :mod:`wan_core.lora.keys`).

    ``rslora`` / ``alpha`` override what the file's metadata says (for PEFT files
    saved without ``.alpha`` keys: scale = alpha / r, or alpha / sqrt(r) for rsLoRA).
    Raises LoraError when nothing in the input is a LoRA key.
    """
    if isinstance(path_or_state_dict, LoraWeights):
        return path_or_state_dict
    try:
        src = open_checkpoint(path_or_state_dict)
    except CheckpointError as exc:
        raise LoraError(f"Cannot read the LoRA: {exc}") from exc
    file_path = Path(path_or_state_dict) if isinstance(path_or_state_dict, (str, Path)) else None
    settings = peft_settings(src, file_path)
    settings = PeftSettings(
        settings.lora_alpha if alpha is None else float(alpha), settings.use_rslora if rslora is None else bool(rslora)
    )
    groups, ignored = _group_keys(list(src.keys()))
    deltas: list[LoraDelta] = []
    for (path, und), parts in groups.items():
        deltas.extend(_deltas_of_group(path, und, parts, src, settings, ignored))
    name = file_path.name if file_path else "state dict"
    if not deltas and any(m in k for k in ignored for m in UNSUPPORTED_MARKERS):
        raise LoraError(
            f"{name} uses an adapter type that is not supported (LoHa/LoKr/OFT/DoRA-only keys such as "
            f"{preview_keys(ignored, 3)}). Supported: LoRA (lora_A/B, lora_down/up + alpha) and "
            ".diff/.diff_b full differences; convert the file to a plain LoRA."
        )
    if not deltas:
        raise LoraError(
            f"{name} has no LoRA weights: none of its {len(src)} keys ({preview_keys(src.keys())}) "
            f"is a lora_A/lora_B, lora_down/lora_up, .diff or .diff_b key. It looks like "
            f"{guess_kind(src.keys())}; load it with the matching loader."
        )
    _check_finite_deltas(deltas, name)
    if ignored:
        log.warning(
            "%s: %d keys are not applied (unsupported adapter type or incomplete pair): %s",
            name,
            len(ignored),
            preview_keys(ignored),
        )
    return LoraWeights(deltas, ignored, name, settings.use_rslora)


def _check_finite_deltas(deltas: list[LoraDelta], name: str) -> None:
    """NaN/Inf in a LoRA turns every frame black once merged: refuse the file before it touches a model."""
    for delta in deltas:
        if not math.isfinite(delta.scale):
            raise NonFiniteError(f"{name}: the alpha of {delta.key!r} gives a non-finite scale: the file is damaged.")
        for role, tensor in delta.tensors().items():
            check_finite(tensor, f"LoRA {name} ({delta.key!r}, {role})", "the file is damaged; re-download it.")


_CACHE: OrderedDict[tuple, LoraWeights] = OrderedDict()
CACHE_SIZE = 4


def load_lora_cached(path: LoraInput) -> LoraWeights:
    """:func:`load_lora` for files, remembering the last few (keyed by path, size and mtime).

    A sampler that attaches a stack per run (and per A14B expert) then reads each
    file once. State dicts and LoraWeights are passed through uncached.
    """
    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        return load_lora(path)
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    weights = load_lora(path)
    _CACHE[key] = weights
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return weights
