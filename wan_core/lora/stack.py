"""LoRA stacks: what the nodes pass around, applied per Wan2.2 A14B expert."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import InputError
from ..validation import check_number
from .apply import MODES, LoraReport, apply_lora
from .weights import load_lora_cached

EXPERTS = ("high", "low", None)


@dataclass(frozen=True)
class LoraSpec:
    """One entry of a LoRA stack.

    ``strength`` applies to single models and to the high-noise expert;
    ``strength_low`` to the low-noise expert (None: same as ``strength``).
    ``blocks``: a tuple of block indices or a regex string (see
    :func:`wan_core.lora.apply.block_predicate`), None for all layers.
    """

    path: str
    strength: float = 1.0
    strength_low: float | None = None
    mode: str = "merge"
    blocks: tuple[int, ...] | str | None = None

    def __post_init__(self) -> None:
        check_number(self.strength, "lora_strength")
        if self.strength_low is not None:
            check_number(self.strength_low, "lora_strength")
        if self.mode not in MODES:
            raise InputError(f"LoRA mode {self.mode!r} is not one of {MODES}.")
        if isinstance(self.blocks, (list, set, frozenset)):
            object.__setattr__(self, "blocks", tuple(sorted(int(b) for b in self.blocks)))

    def strength_for(self, expert: str | None) -> float:
        """The strength for ``expert`` ("high", "low" or None for a single model)."""
        if expert not in EXPERTS:
            raise InputError(f"expert must be 'high', 'low' or None, got {expert!r}.")
        if expert == "low" and self.strength_low is not None:
            return float(self.strength_low)
        return float(self.strength)


def apply_lora_stack(
    dit: nn.Module, specs: list[LoraSpec] | tuple[LoraSpec, ...], expert: str | None = None, keep_original: bool = False
) -> list[LoraReport]:
    """Apply each LoRA of a stack in order, with the strength that ``expert`` gets.

    Entries whose strength for this expert is 0 are skipped (no report), so a
    LoRA meant only for the high-noise expert costs nothing on the low one.
    ``keep_original``: merged entries keep a CPU copy of the tensors they change,
    so :func:`~wan_core.lora.remove_lora` restores them bit-exactly (use it when
    applying for one run and removing afterwards; bf16/fp8 subtraction drifts).
    """
    reports = []
    for spec in specs:
        strength = spec.strength_for(expert)
        if strength == 0.0:
            continue
        reports.append(
            apply_lora(
                dit,
                load_lora_cached(spec.path),
                strength=strength,
                mode=spec.mode,
                blocks=spec.blocks,
                keep_original=keep_original,
            )
        )
    return reports
