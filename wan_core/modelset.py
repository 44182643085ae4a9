"""ModelSet: "a model to sample with", the one home shared by the pipeline and the nodes.

A ModelSet holds one DiT, or the high- and low-noise experts of a Wan2.2 A14B model,
plus the LoRAs to attach while sampling. It owns the rules both front doors need:

* the pair check (:func:`check_pair`, run when the set is built);
* the sampling target (:meth:`ModelSet.sampling_target`): the DiT, or
  :class:`~wan_core.sampling.Experts` with the boundary as a fraction of the timestep
  range (0..1, the official configs' unit). Guidance is never stored here: it travels
  in ``SamplerSettings.cfg``, one number or a (low_noise, high_noise) pair;
* attaching and detaching the LoRAs (:meth:`ModelSet.attached_loras`);
* the names: an expert pair is named after its Wan2.2 release, because the Wan2.2
  T2V-A14B experts are key-identical to Wan2.1 T2V-14B (the DiT alone reports wan2.1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from .dit.config import DiTConfig, check_pair, defaults_family, describe_variant
from .dit.model import WanDiT
from .lora import LoraReport, LoraSpec, apply_lora_stack, remove_lora
from .sampling.experts import Experts
from .sampling.model import DiTLike


class Placement(Protocol):
    """Where the DiT calls of a ModelSet run when it spans several processes (e.g. GPUs).

    ``sampling_target`` swaps each DiT of the target for a stand-in that runs on every
    rank, with ``loras`` applied there too; ``describe`` names the devices for the badge.
    """

    def sampling_target(self, target: DiTLike | Experts, loras: tuple[LoraSpec, ...]) -> DiTLike | Experts: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class ModelSet:
    """One DiT (``high``) or an A14B expert pair (``high`` + ``low``), and the LoRAs to attach.

    The DiTs may be shared (ComfyUI caches node outputs; a pipeline reuses its models), so
    a ModelSet never changes them permanently: :meth:`attached_loras` undoes what it did.
    """

    high: WanDiT
    low: WanDiT | None = None
    loras: tuple[LoraSpec, ...] = field(default_factory=tuple)
    placement: Placement | None = None  # several GPUs (nodes.multigpu); None = this process

    def __post_init__(self) -> None:
        if self.low is not None:
            check_pair(self.high.config, self.low.config)

    @property
    def config(self) -> DiTConfig:
        """The (high-noise) DiT's detected config; both experts share it."""
        return self.high.config

    @property
    def is_pair(self) -> bool:
        return self.low is not None

    @property
    def family(self) -> str:
        """The family whose official defaults apply: an expert pair is always Wan2.2."""
        return defaults_family(self.config, self.is_pair)

    @property
    def variant(self) -> str:
        """The detected variant, or the pair's release name (e.g. wan2.2-t2v-a14b)."""
        return describe_variant(self.config, None if self.low is None else self.low.config)

    def describe(self) -> str:
        """The loader badge: the variant, marked as an expert pair when it is one."""
        return f"{self.variant} (high + low noise experts)" if self.is_pair else self.variant

    def experts(self) -> list[tuple[str | None, WanDiT]]:
        """(expert name for LoRA strengths, DiT): [(None, dit)] or [("high", ...), ("low", ...)]."""
        if self.low is None:
            return [(None, self.high)]
        return [("high", self.high), ("low", self.low)]

    def with_loras(self, specs: Sequence[LoraSpec]) -> ModelSet:
        """A copy with ``specs`` appended to the LoRA stack (the DiTs are shared, not copied)."""
        return replace(self, loras=self.loras + tuple(specs))

    def sampling_target(self, boundary: float | None = None, offload: str = "auto") -> DiTLike | Experts:
        """What :func:`wan_core.sampling.sample` runs: the DiT, or the two experts.

        ``boundary``: fraction of the timestep range (0, 1] where the low-noise expert takes
        over; None = the official one of the task (0.875 T2V, 0.9 I2V). Ignored for one DiT.
        ``offload``: "auto", "always" or "never" (see :class:`~wan_core.sampling.Experts`).
        """
        target: DiTLike | Experts = self.high
        if self.low is not None:
            target = Experts(high=self.high, low=self.low, boundary=boundary, offload=offload)
        if self.placement is not None:  # every DiT call then runs on all of the placement's ranks
            target = self.placement.sampling_target(target, self.loras)
        return target

    @contextlib.contextmanager
    def attached_loras(self, keep_original: bool = True) -> Iterator[None]:
        """Attach the LoRA stack to each DiT (per-expert strengths) for the ``with`` block, then remove it.

        ``keep_original``: merged LoRAs keep a CPU copy of the weights they change, so removing
        them restores the weights bit-exactly (subtracting drifts bf16/fp8 weights a little every
        run). False saves that memory when the block lasts as long as the models (the pipeline).
        Whatever was attached before an error is removed again.
        """
        applied: list[tuple[WanDiT, LoraReport]] = []
        try:
            for expert, dit in self.experts():
                for spec in self.loras:  # one at a time, so a failing LoRA leaves the earlier ones removable
                    reports = apply_lora_stack(dit, [spec], expert=expert, keep_original=keep_original)
                    applied.extend((dit, report) for report in reports)
            yield
        finally:
            for dit, report in reversed(applied):
                remove_lora(dit, report)
