"""The per-step report of one sampling run: which steps ran the DiT, which reused a cache.

One mark per step (the sampler node draws them under its sigma plot):

* ``R``: the DiT ran for every guidance branch of the step;
* ``P``: it ran for some branches, others reused their cache;
* ``C``: no branch ran the DiT (blocks) this step, every one reused its cache;
* ``Z``: CFG-Zero* zero-init: the step used a zero velocity, no DiT call at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MARKS = "RPCZ"


@dataclass
class StepRecord:
    """What one step did. ``needed``: DiT branch evaluations the step asked for (1, or 2 with CFG);
    ``ran``: how many of them ran the DiT blocks; ``expert``: "high" / "low" for Wan2.2 A14B."""

    step: int
    expert: str | None = None
    needed: int = 0
    ran: int = 0
    zero: bool = False

    @property
    def mark(self) -> str:
        if self.zero:
            return "Z"
        if self.ran >= self.needed:
            return "R"
        return "C" if self.ran == 0 else "P"


@dataclass
class StepReport:
    """All steps of one run, in order, and the caching method that produced them ("none" when off)."""

    method: str = "none"
    records: list[StepRecord] = field(default_factory=list)

    @property
    def marks(self) -> str:
        return "".join(r.mark for r in self.records)

    @property
    def dit_calls(self) -> int:
        """DiT branch evaluations that ran (a batched cond + uncond forward counts 2)."""
        return sum(r.ran for r in self.records)

    @property
    def needed_calls(self) -> int:
        """Branch evaluations an uncached run of the same settings makes (zero-init steps excluded)."""
        return sum(r.needed for r in self.records if not r.zero)

    def summary(self) -> str:
        steps = len(self.records)
        ran = sum(1 for r in self.records if r.mark in "RP")
        return (
            f"{self.method}: the DiT ran in {ran}/{steps} steps ({self.dit_calls} of {self.needed_calls} "
            f"branch evaluations): {self.marks}"
        )
