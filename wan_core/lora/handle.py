"""What an applied LoRA leaves behind: run-time adapters and merged weights that can be re-weighted or undone.

Merged parameters are written with fresh storage (never in place) and stamped, so a
handle can tell whether a weight still holds what it wrote last: then it restores
its CPU copy of the original bit-exactly (when kept); otherwise it subtracts its own
contribution.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeGuard

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LoraError
from ..ops import WanLinear
from ..quant.weight import QuantizedWeight

DeltaFn = Callable[[torch.device, torch.Size], torch.Tensor]


@dataclass
class _Strength:
    value: float


class RuntimeAdapter:
    """``x -> s · (x @ down^T @ up^T + bias)`` with ``s = strength · scale``, in ``x.dtype`` on ``x.device``.

    For a full ``.diff`` the matrix sits in ``down`` and ``up`` is None. The factors
    are cached once per (device, dtype), so block swap moves them with the input.
    """

    def __init__(
        self,
        strength: _Strength,
        scale: float,
        down: torch.Tensor | None = None,
        up: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> None:
        self.strength = strength
        self.scale = scale
        self._master = (down, up, bias)
        self._cache: tuple[torch.device, torch.dtype, tuple] | None = None

    def _factors(self, x: torch.Tensor) -> tuple:
        if self._cache is None or self._cache[0] != x.device or self._cache[1] != x.dtype:
            moved = tuple(None if t is None else t.to(device=x.device, dtype=x.dtype) for t in self._master)
            self._cache = (x.device, x.dtype, moved)
        return self._cache[2]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        s = self.strength.value * self.scale
        if s == 0.0:
            return x.new_zeros(())
        down, up, bias = self._factors(x)
        y = None
        if down is not None:
            y = F.linear(x, down)
            if up is not None:
                y = F.linear(y, up)
        if bias is not None:
            y = bias if y is None else y + bias
        assert y is not None  # an adapter carries factors or a bias
        return y * s


@dataclass
class _Merged:
    """One ΔW merged into ``owner.<leaf>`` at strength ``applied``."""

    owner: nn.Module
    leaf: str
    delta_fn: DeltaFn
    applied: float


@dataclass
class _Original:
    """CPU copy of a parameter (a Linear weight: with its format) before a handle first changed it, with its stamp."""

    tensor: torch.Tensor | QuantizedWeight
    stamp: int | None


ParamKey = tuple[int, str]
_STAMPS = itertools.count(1)
STAMP_ATTR = "_wan_lora_stamp"


def _param_key(owner: nn.Module, leaf: str) -> ParamKey:
    return id(owner), leaf


def _stamp_of(owner: nn.Module, leaf: str) -> int | None:
    """Which LoRA write produced the parameter's current value (None: never written by LoRA code)."""
    return getattr(getattr(owner, leaf), STAMP_ATTR, None)


def _set_stamp(owner: nn.Module, leaf: str, stamp: int | None) -> None:
    setattr(getattr(owner, leaf), STAMP_ATTR, stamp)


def _is_linear_weight(owner: nn.Module, leaf: str) -> TypeGuard[WanLinear]:
    return isinstance(owner, WanLinear) and leaf == "weight"


def _add_to_param(owner: nn.Module, leaf: str, delta_fn: DeltaFn, amount: float) -> None:
    """``owner.<leaf> += amount · ΔW`` in fp32; a Linear weight is stored again in its own format.

    The parameter gets new storage instead of an in-place write, so tensors shared with
    the caller's state dict (loaders may alias them) stay unchanged. Quantised Linear
    weights (fp8, int8, GGUF) go through :meth:`QuantizedWeight.with_delta`.
    """
    if _is_linear_weight(owner, leaf):
        w = owner.quantized_weight()
        owner.store_weight(w.with_delta(amount * delta_fn(w.device, torch.Size(w.shape))))
    else:
        p = getattr(owner, leaf)
        p.data = (p.detach().float() + amount * delta_fn(p.device, p.shape)).to(p.dtype)
    _set_stamp(owner, leaf, next(_STAMPS))


def _copy_original(owner: nn.Module, leaf: str) -> _Original:
    if _is_linear_weight(owner, leaf):
        saved = owner.quantized_weight().to("cpu", copy=True)
    else:
        saved = getattr(owner, leaf).detach().to("cpu", copy=True)
    return _Original(saved, _stamp_of(owner, leaf))


def _restore(owner: nn.Module, leaf: str, original: _Original) -> None:
    p = getattr(owner, leaf)
    if _is_linear_weight(owner, leaf) and isinstance(original.tensor, QuantizedWeight):
        owner.store_weight(original.tensor.to(p.device, copy=True))
    else:
        p.data = original.tensor.to(p.device, copy=True)
    _set_stamp(owner, leaf, original.stamp)


@dataclass
class LoraHandle:
    """What one :func:`apply_lora` call changed, so it can be re-weighted or undone.

    With originals kept, a parameter this handle wrote last is restored from its
    copy (bit-exact, no drift); otherwise (another LoRA changed it since, or no
    copy) the handle's own contribution is subtracted.
    """

    model_id: int
    strength: _Strength
    adapters: list[tuple[WanLinear, RuntimeAdapter]] = field(default_factory=list)
    merged: list[_Merged] = field(default_factory=list)
    originals: dict[ParamKey, _Original] = field(default_factory=dict)
    last_written: dict[ParamKey, int | None] = field(default_factory=dict)
    removed: bool = False

    def merge(self, owner: nn.Module, leaf: str, delta_fn: DeltaFn, keep_original: bool) -> None:
        key = _param_key(owner, leaf)
        if keep_original and key not in self.originals:
            self.originals[key] = _copy_original(owner, leaf)
        _add_to_param(owner, leaf, delta_fn, self.strength.value)
        self.merged.append(_Merged(owner, leaf, delta_fn, self.strength.value))
        self.last_written[key] = _stamp_of(owner, leaf)

    def _by_param(self) -> dict[ParamKey, list[_Merged]]:
        groups: dict[ParamKey, list[_Merged]] = {}
        for m in self.merged:
            groups.setdefault(_param_key(m.owner, m.leaf), []).append(m)
        return groups

    def _restorable(self, key: ParamKey, owner: nn.Module, leaf: str) -> bool:
        return key in self.originals and _stamp_of(owner, leaf) == self.last_written.get(key)

    def _reweight(self, key: ParamKey, entries: list[_Merged], value: float) -> None:
        owner, leaf = entries[0].owner, entries[0].leaf
        if self._restorable(key, owner, leaf):
            _restore(owner, leaf, self.originals[key])
            for m in entries:
                m.applied = 0.0
        for m in entries:
            if m.applied != value:
                _add_to_param(owner, leaf, m.delta_fn, value - m.applied)
                m.applied = value
        self.last_written[key] = _stamp_of(owner, leaf)

    @torch.no_grad()
    def set_strength(self, value: float) -> None:
        """Change the strength: run-time adapters read it on the next call; merged parts are re-merged."""
        if self.removed:
            raise LoraError("This LoRA was removed from the model; apply it again instead of changing its strength.")
        value = float(value)
        self.strength.value = value
        for key, entries in self._by_param().items():
            self._reweight(key, entries, value)

    @torch.no_grad()
    def remove(self) -> None:
        """Drop run-time adapters and un-merge merged parts."""
        if self.removed:
            return
        for module, adapter in self.adapters:
            module.adapters[:] = [a for a in module.adapters if a is not adapter]
        for key, entries in self._by_param().items():
            self._reweight(key, entries, 0.0)
        self.originals.clear()
        self.removed = True
