"""Applying a loaded LoRA to a model: merged into the weights or added at run time.

* merge: ``W <- W + strength · ΔW`` computed in fp32 on the weight's device and cast
  back; quantised Linear weights (fp8, int8, GGUF) are dequantised, changed and
  re-quantised (:meth:`~wan_core.quant.weight.QuantizedWeight.with_delta`).
* runtime: a small callable is appended to ``WanLinear.adapters``; the stored weight
  (fp8 or not) is untouched, the strength can change between calls, and the factors
  follow the input's device (block swap). Targets that are not WanLinear weights
  (norms, modulation, the patch-embedding conv) are merged even in runtime mode.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn

from ..errors import InputError, LoraError, preview_keys
from ..ops import WanLinear
from ..validation import check_number
from .handle import DeltaFn, LoraHandle, RuntimeAdapter, _Strength
from .keys import block_index, is_i2v_only, underscore_table
from .weights import LoraDelta, LoraInput, LoraWeights, load_lora

log = logging.getLogger(__name__)

BlockFilter = Iterable[int] | str | re.Pattern | Callable[[str], bool] | None
MODES = ("merge", "runtime")


@dataclass(frozen=True)
class Target:
    """A delta resolved to one model parameter ``owner.<leaf>`` (full name ``name``)."""

    delta: LoraDelta
    name: str
    owner: nn.Module
    leaf: str


@dataclass
class LoraReport:
    """Outcome of :func:`apply_lora`: counts (also logged) and the handle to re-weight or undo it."""

    name: str
    matched: int
    unmatched: list[str]
    skipped_i2v: int
    handle: LoraHandle
    filtered: int = 0
    merged: int = 0
    runtime: int = 0
    ignored: list[str] = field(default_factory=list)

    def set_strength(self, value: float) -> None:
        self.handle.set_strength(value)

    @property
    def strength(self) -> float:
        return self.handle.strength.value


# ---------------------------------------------------------------------------------------
# Resolving deltas to parameters
# ---------------------------------------------------------------------------------------


def _owner_and_leaf(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    owner_name, _, leaf = name.rpartition(".")
    return (model.get_submodule(owner_name) if owner_name else model), leaf


def _param_name(delta: LoraDelta, params: dict[str, nn.Parameter], table: dict[str, str]) -> str | None:
    path = table.get(delta.path) if delta.underscored else delta.path
    if path is None:
        return None
    candidates = [path + ".bias"] if delta.kind == "diff_b" else [path + ".weight", path]
    return next((c for c in candidates if c in params), None)


def block_predicate(blocks: BlockFilter) -> Callable[[str], bool]:
    """Which official parameter names a LoRA may change.

    ints: ``blocks.N.*`` only for N in the set (layers outside the main blocks are
    kept); a string or compiled regex: ``re.search`` on the official name; a
    callable: used as is.
    """
    if blocks is None:
        return lambda name: True
    if callable(blocks) and not isinstance(blocks, re.Pattern):
        return blocks
    if isinstance(blocks, (str, re.Pattern)):
        pattern = re.compile(blocks)
        return lambda name: pattern.search(name) is not None
    wanted = {int(b) for b in blocks}
    return lambda name: block_index(name) is None or block_index(name) in wanted


def logical_shape(owner: nn.Module, leaf: str) -> tuple[int, ...]:
    """A parameter's shape as the model uses it (a quantised Linear weight: its [out, in], not its storage)."""
    if isinstance(owner, WanLinear) and leaf == "weight":
        return owner.weight_shape
    return tuple(getattr(owner, leaf).shape)


def _check_shape(t: Target) -> None:
    got = t.delta.delta_shape()
    want = logical_shape(t.owner, t.leaf)
    numel = math.prod(want)
    if t.delta.kind in ("lowrank", "loha", "lokr"):
        fits = got[0] == want[0] and got[1] * want[0] == numel
    else:
        fits = t.delta.part(t.delta.diff, "diff").numel() == numel
    if not fits:
        raise LoraError(
            f"LoRA key {t.delta.key!r} does not fit the model: it changes {t.name!r} with a delta of shape {got}, "
            f"but the model's tensor has shape {want}. The LoRA was made for another model size or variant "
            "(e.g. a 14B LoRA on a 1.3B model); pick the LoRA that matches the model."
        )


@dataclass
class _Plan:
    targets: list[Target]
    unmatched: list[str]
    skipped_i2v: int
    filtered: int


def plan_lora(model: nn.Module, lora: LoraWeights, blocks: BlockFilter = None) -> _Plan:
    """Resolve every delta to a model parameter and check shapes, changing nothing."""
    params = dict(model.named_parameters())
    table = underscore_table(params) if any(d.underscored for d in lora.deltas) else {}
    keep = block_predicate(blocks)
    plan = _Plan([], [], 0, 0)
    for delta in lora.deltas:
        name = _param_name(delta, params, table)
        if name is None:
            if is_i2v_only(delta.path):
                plan.skipped_i2v += 1
            else:
                plan.unmatched.append(delta.key)
            continue
        if not keep(name):
            plan.filtered += 1
            continue
        owner, leaf = _owner_and_leaf(model, name)
        target = Target(delta, name, owner, leaf)
        _check_shape(target)
        plan.targets.append(target)
    return plan


# ---------------------------------------------------------------------------------------
# Applying
# ---------------------------------------------------------------------------------------


def _can_run_at_runtime(t: Target) -> bool:
    if t.delta.kind not in ("lowrank", "diff", "diff_b") or not isinstance(t.owner, WanLinear):
        return False
    return t.leaf in ("weight", "bias") and getattr(t.owner, t.leaf).ndim <= 2


def _runtime_adapter(t: Target, strength: _Strength) -> RuntimeAdapter:
    d = t.delta
    if d.kind == "lowrank":
        down, up = d.part(d.down, "down").flatten(1), d.part(d.up, "up").flatten(1)
        return RuntimeAdapter(strength, d.scale, down, up, d.up_bias)
    diff = d.part(d.diff, "diff")
    if d.kind == "diff":
        return RuntimeAdapter(strength, 1.0, down=diff.reshape(cast(WanLinear, t.owner).weight_shape))
    return RuntimeAdapter(strength, 1.0, bias=diff.reshape(-1))


def _merge_entries(t: Target) -> list[tuple[nn.Module, str, DeltaFn]]:
    """(owner, leaf, ΔW function) for each parameter the delta changes (lowrank up_bias: also the bias)."""
    d = t.delta
    entries: list[tuple[nn.Module, str, DeltaFn]] = [(t.owner, t.leaf, d.weight_delta)]
    up_bias = d.up_bias
    if d.kind == "lowrank" and up_bias is not None:
        if getattr(t.owner, "bias", None) is None:
            log.warning("LoRA key %r has a lora_B.bias but %r has no bias; the bias part is skipped.", d.key, t.name)
        else:
            entries.append((t.owner, "bias", lambda dev, shape: (up_bias.to(dev).float() * d.scale).reshape(shape)))
    return entries


@torch.no_grad()
def _merge(t: Target, handle: LoraHandle, keep_original: bool) -> None:
    for owner, leaf, fn in _merge_entries(t):
        handle.merge(owner, leaf, fn, keep_original)


def apply_lora(
    model: nn.Module,
    lora: LoraInput,
    strength: float = 1.0,
    mode: str = "merge",
    blocks: BlockFilter = None,
    keep_original: bool = False,
) -> LoraReport:
    """Apply one LoRA (a path, state dict or :class:`LoraWeights`) to a model with official parameter names.

    ``mode`` "merge" changes the weights; "runtime" adds adapters to WanLinear layers.
    ``blocks`` restricts the layers changed (see :func:`block_predicate`).
    ``keep_original`` stores CPU copies of the merged tensors so :func:`remove_lora`
    restores them bit-exactly (else it subtracts, which rounds for bf16/fp8 weights).
    Raises LoraError when no key matches or a shape does not fit; nothing is
    changed in that case.
    """
    if mode not in MODES:
        raise InputError(f"LoRA mode {mode!r} is not one of {MODES}.")
    check_number(strength, "lora_strength")
    weights = load_lora(lora)
    plan = plan_lora(model, weights, blocks)
    if not plan.targets and not plan.filtered:
        example = next(iter(dict(model.named_parameters())), "none")
        raise LoraError(
            f"{weights.name}: none of its {len(weights.deltas)} targets exist in the model "
            f"(LoRA keys: {preview_keys(plan.unmatched or [d.key for d in weights.deltas], 3)}; model parameters "
            f"look like {example!r}). The LoRA is for another model family or variant; pick a Wan LoRA made "
            "for this model."
        )
    handle = LoraHandle(id(model), _Strength(float(strength)))
    runtime = 0
    for t in plan.targets:
        if mode == "runtime" and _can_run_at_runtime(t):
            adapter = _runtime_adapter(t, handle.strength)
            owner = cast(WanLinear, t.owner)  # _can_run_at_runtime checked it
            owner.adapters.append(adapter)
            handle.adapters.append((owner, adapter))
            runtime += 1
        else:
            _merge(t, handle, keep_original)
    report = LoraReport(
        weights.name,
        len(plan.targets),
        plan.unmatched,
        plan.skipped_i2v,
        handle,
        plan.filtered,
        len(plan.targets) - runtime,
        runtime,
        list(weights.ignored),
    )
    _log_report(report, mode)
    return report


def _log_report(r: LoraReport, mode: str) -> None:
    log.info(
        "LoRA %s (%s, strength %.3g): %d matched (%d merged, %d at run time), %d unmatched, "
        "%d I2V-only skipped, %d filtered out by the block filter",
        r.name,
        mode,
        r.strength,
        r.matched,
        r.merged,
        r.runtime,
        len(r.unmatched),
        r.skipped_i2v,
        r.filtered,
    )
    if r.unmatched:
        log.warning(
            "LoRA %s: %d keys match no model parameter: %s", r.name, len(r.unmatched), preview_keys(r.unmatched)
        )


def remove_lora(model: nn.Module, report_or_handle: LoraReport | LoraHandle) -> None:
    """Undo :func:`apply_lora`: drop run-time adapters and un-merge merged weights."""
    handle = report_or_handle.handle if isinstance(report_or_handle, LoraReport) else report_or_handle
    if handle.model_id != id(model):
        raise LoraError("This LoRA handle belongs to another model; remove it from the model it was applied to.")
    handle.remove()
