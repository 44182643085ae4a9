"""Rank 0 drives, the other ranks serve: commands, the worker loop and rank 0's DiT stand-in.

Rank 0 runs the sampler (or the whole pipeline) as in a single-process run, holding a
:class:`ParallelDiT` where the sampler expects a DiT. Each call of it posts a
:class:`Forward` to the workers and then runs its own share (:func:`runner.run_forward`);
the workers, looping in :func:`serve`, run theirs. Commands travel over a :class:`Link`
(queues for spawned workers, a gloo broadcast under torchrun: see :mod:`.links`); tensors
meet only inside the collectives of the forward itself.

Workers keep their DiTs between calls and follow rank 0's LoRAs: every Forward names the
LoRA stack in effect and a worker re-applies its copy when the stack changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ..errors import ParallelError, ParallelWorkerError, WanError
from ..lora import apply_lora_stack, remove_lora
from ..sampling.experts import Residency
from .fsdp import is_sharded
from .layout import Layout
from .runner import ForwardCall, run_forward

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiTSpec:
    """What every rank loads: ``source`` (a path, shard paths, or a state dict) and the load options."""

    source: Any
    dtype: Any = None
    attention: str = "auto"
    block_swap: int = 0
    compute_dtype: Any = None

    def load(self, device: torch.device, offload_device: torch.device | str = "cpu"):
        import wan_core

        dit = wan_core.load_dit(
            self.source,
            device=device,
            dtype=self.dtype,
            attention=self.attention,
            block_swap=self.block_swap,
            offload_device=offload_device,
        )
        if self.compute_dtype is not None:
            from ..devices import resolve_dtype

            dit.set_compute_dtype(resolve_dtype(self.compute_dtype))
        return dit


@dataclass(frozen=True)
class LoraState:
    """The LoRA stack in effect on one DiT: wan_core.lora.LoraSpec entries and the A14B expert name."""

    specs: tuple = ()
    expert: str | None = None


@dataclass(frozen=True)
class Load:
    key: str
    spec: DiTSpec
    park: bool = False  # wait on the CPU until its first forward (the A14B low-noise expert)
    loras: LoraState = field(default_factory=LoraState)  # applied at once (before sharding weights)


@dataclass(frozen=True)
class Drop:
    key: str


@dataclass(frozen=True)
class Forward:
    key: str
    loras: LoraState
    call: ForwardCall


@dataclass(frozen=True)
class Stop:
    pass


Command = Load | Drop | Forward | Stop


class Link(Protocol):
    """Rank 0's end of the command channel."""

    def post(self, command: Command) -> None: ...

    def request(self, command: Command) -> None:
        """Post and wait until every worker handled it; ParallelWorkerError with their errors."""
        ...

    def check(self) -> None:
        """Raise ParallelWorkerError now if a worker is known to be gone."""
        ...

    def fail(self, exc: BaseException) -> ParallelWorkerError:
        """The group broke during a collective: shut it down, return the error to raise."""
        ...


class Inbox(Protocol):
    """A worker's end: the next command (None when rank 0 is gone) and the answer to a request."""

    def receive(self) -> Command | None: ...

    def answer(self, command: Command, error: str | None) -> None: ...


# ---------------------------------------------------------------------------------- workers


@dataclass
class Hosted:
    dit: Any
    loras: LoraState = field(default_factory=LoraState)
    reports: list = field(default_factory=list)


class ModelHost:
    """A worker's DiTs by key, on its device (parked ones on the CPU until needed)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.device = layout.device
        self.models: dict[str, Hosted] = {}

    def load(self, command: Load) -> None:
        shard = self.layout.options.shard_weights
        dit = command.spec.load(torch.device("cpu") if command.park or shard else self.device)
        hosted = Hosted(dit)
        self._sync_loras(hosted, command.loras)
        if shard:
            from .fsdp import shard_blocks

            shard_blocks(dit, self.layout.mesh)
        self.models[command.key] = hosted

    def drop(self, key: str) -> None:
        self.models.pop(key, None)

    def forward(self, command: Forward) -> None:
        hosted = self.models.get(command.key)
        if hosted is None:
            raise ParallelError(f"Worker has no model {command.key!r}; it was never loaded or already dropped.")
        self._sync_loras(hosted, command.loras)
        Residency([h.dit for h in self.models.values()], self.device, "auto").activate(hosted.dit)
        with torch.no_grad():
            run_forward(hosted.dit, self.layout, command.call)

    @staticmethod
    def _sync_loras(hosted: Hosted, state: LoraState) -> None:
        if hosted.loras == state:
            return
        if is_sharded(hosted.dit):
            raise ParallelError(
                "The LoRA stack of a model with sharded weights is fixed when it is loaded; "
                "load it again with the new LoRAs, or run without weight sharding."
            )
        for report in reversed(hosted.reports):
            remove_lora(hosted.dit, report)
        hosted.reports, hosted.loras = [], LoraState()
        if state.specs:
            hosted.reports = apply_lora_stack(hosted.dit, list(state.specs), expert=state.expert, keep_original=True)
        hosted.loras = state


def serve(host: ModelHost, inbox: Inbox) -> None:
    """A worker's loop: handle commands until Stop or until rank 0 disappears.

    Input errors (WanError) happen on every rank alike before any collective, so the
    worker reports them and goes on; anything else leaves the group unusable: report, exit.
    """
    while True:
        command = inbox.receive()
        if command is None or isinstance(command, Stop):
            return
        error = None
        try:
            if isinstance(command, Load):
                host.load(command)
            elif isinstance(command, Drop):
                host.drop(command.key)
            else:
                host.forward(command)
        except WanError as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("worker: %s", error)
        except Exception as exc:  # the process ends here; rank 0 hears of it through the answer
            inbox.answer(command, f"{type(exc).__name__}: {exc}")
            raise
        if error is not None or isinstance(command, Load):  # rank 0 waits for answers to loads only
            inbox.answer(command, error)


# ---------------------------------------------------------------------------------- rank 0


class Leader:
    """Rank 0's side: posts commands and runs its own share of every forward."""

    def __init__(self, layout: Layout, link: Link) -> None:
        self.layout = layout
        self.link = link

    def load(self, key: str, spec: DiTSpec, park: bool = False, loras: LoraState | None = None) -> None:
        self.link.check()
        self.link.request(Load(key, spec, park, loras or LoraState()))

    def drop(self, key: str) -> None:
        self.link.post(Drop(key))

    def forward(self, key: str, dit: Any, loras: LoraState, call: ForwardCall) -> torch.Tensor:
        self.link.check()
        self.link.post(Forward(key, loras, call.to_cpu()))
        try:
            with torch.no_grad():
                return run_forward(dit, self.layout, call)
        except WanError:
            raise  # an input error every rank raised alike, before any collective: the group is intact
        except RuntimeError as exc:  # a collective failed or timed out (or this rank failed mid-forward)
            raise self.link.fail(exc) from exc

    def stop(self) -> None:
        self.link.post(Stop())


class ParallelDiT:
    """Rank 0's stand-in for a DiT that every rank holds: the sampler calls it like the DiT.

    ``local`` is rank 0's own copy (its LoRAs are attached by the caller as usual);
    ``loras`` tells the workers which stack to hold while this object is used.
    """

    def __init__(self, leader: Leader, key: str, local: Any, loras: LoraState | None = None) -> None:
        self.leader = leader
        self.key = key
        self.local = local
        self.loras = loras or LoraState()

    @property
    def config(self):
        return self.local.config

    @property
    def device(self) -> torch.device:
        return self.local.device

    @property
    def dtype(self) -> torch.dtype:
        return self.local.dtype

    def to(self, *args: Any, **kwargs: Any) -> ParallelDiT:
        """Moves rank 0's copy only (the workers keep theirs where they are); sharded weights stay put."""
        if not is_sharded(self.local):
            self.local.to(*args, **kwargs)
        return self

    def __call__(self, x: torch.Tensor, t: Any, context: Any, **extras: Any) -> torch.Tensor:
        out = self.leader.forward(self.key, self.local, self.loras, ForwardCall(x, t, context, extras))
        return out.to(x.device)
