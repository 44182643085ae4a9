"""The two command channels between rank 0 and the workers (see :mod:`.service`).

* Queues (:class:`QueueLink` / :class:`QueueInbox`): workers spawned by a long-lived host
  process (ComfyUI). An idle worker blocks on its queue, not on a collective, so it may
  wait for hours; rank 0 watches the worker processes and fails fast when one is gone.
  A command is pickled when it is posted, in the caller's thread: a queue otherwise pickles
  in a feeder thread later, and torch's pickler moves a CPU tensor's storage into shared
  memory (swapping and freeing the old buffer) while rank 0 may be computing with it.
* A gloo broadcast (:class:`BroadcastLink` / :class:`BroadcastInbox`): processes started by
  torchrun, which share nothing but the process group.
"""

from __future__ import annotations

import logging
import pickle
import queue as queue_module
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

import torch.distributed as dist
import torch.multiprocessing  # noqa: F401  (registers the tensor reducers with ForkingPickler)

from ..errors import ParallelWorkerError
from .service import Command, Forward

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Envelope:
    seq: int
    command: Any


@dataclass(frozen=True)
class Answer:
    rank: int
    seq: int
    error: str | None


def _failure_text(exc: BaseException | None, problems: list[str]) -> str:
    what = f"The multi-GPU forward failed ({type(exc).__name__}: {exc})" if exc is not None else "A worker is gone"
    detail = "; ".join(problems) if problems else "no worker reported an error (a collective timed out or broke)"
    return (
        f"{what}; {detail}. The worker processes were stopped: run again to restart them "
        "(check the console for the worker's own traceback, e.g. out of memory)."
    )


class QueueLink:
    """Rank 0's end: one command queue per worker and a shared answer queue.

    ``watch()`` names dead workers (or returns None); ``shutdown()`` stops the group after a failure.
    """

    def __init__(
        self,
        commands: list,
        answers: Any,
        watch: Callable[[], str | None],
        shutdown: Callable[[], None],
        request_timeout_s: float = 1800.0,
    ) -> None:
        self.commands, self.answers = commands, answers
        self.watch, self.shutdown = watch, shutdown
        self.request_timeout_s = request_timeout_s
        self.seq = 0
        self.worker_errors: list[str] = []

    def post(self, command: Command) -> None:
        self._send(command)

    def _send(self, command: Command) -> int:
        """Queue ``command`` for every worker; returns its sequence number (answers carry it)."""
        self.seq += 1
        for q in self.commands:  # one pickle per worker: a shared-memory handle is received once
            q.put(bytes(ForkingPickler.dumps(Envelope(self.seq, command))))
        return self.seq

    def request(self, command: Command) -> None:
        seq = self._send(command)
        pending, errors = len(self.commands), []
        deadline = time.monotonic() + self.request_timeout_s
        while pending:
            answer = self._next_answer(deadline)
            if answer.seq != seq:
                continue
            pending -= 1
            if answer.error is not None:
                errors.append(f"rank {answer.rank}: {answer.error}")
        if errors:
            raise ParallelWorkerError(f"Workers failed to {type(command).__name__.lower()}: " + "; ".join(errors))

    def _next_answer(self, deadline: float) -> Answer:
        while True:
            try:
                answer = self.answers.get(timeout=0.5)
            except queue_module.Empty:
                self.check()
                if time.monotonic() > deadline:
                    self.shutdown()
                    raise ParallelWorkerError(
                        f"Workers did not answer within {self.request_timeout_s:.0f} s; they were stopped."
                    ) from None
                continue
            if answer.error is not None:
                self.worker_errors.append(f"rank {answer.rank}: {answer.error}")
            return answer

    def check(self) -> None:
        problem = self.watch()
        if problem is not None:
            self.shutdown()
            raise ParallelWorkerError(_failure_text(None, [problem, *self._drain()]))

    def fail(self, exc: BaseException) -> ParallelWorkerError:
        time.sleep(0.2)  # let a dying worker's last answer arrive
        problems = [p for p in [self.watch(), *self._drain()] if p]
        self.shutdown()
        return ParallelWorkerError(_failure_text(exc, problems))

    def _drain(self) -> list[str]:
        while True:
            try:
                answer = self.answers.get_nowait()
            except (queue_module.Empty, OSError, ValueError):
                break
            if answer.error is not None:
                self.worker_errors.append(f"rank {answer.rank}: {answer.error}")
        errors, self.worker_errors = self.worker_errors, []
        return errors


class QueueInbox:
    """A spawned worker's end; ``parent_alive()`` False ends the loop (the host process died)."""

    def __init__(self, rank: int, commands: Any, answers: Any, parent_alive: Callable[[], bool]) -> None:
        self.rank, self.commands, self.answers = rank, commands, answers
        self.parent_alive = parent_alive
        self.seq = 0

    def receive(self) -> Command | None:
        while True:
            try:
                envelope = pickle.loads(self.commands.get(timeout=1.0))  # ForkingPickler's output (QueueLink.post)
            except queue_module.Empty:
                if not self.parent_alive():
                    log.warning("worker %d: the host process is gone; stopping.", self.rank)
                    return None
                continue
            self.seq = envelope.seq
            return envelope.command

    def answer(self, command: Command, error: str | None) -> None:
        self.answers.put(Answer(self.rank, self.seq, error))


class BroadcastLink:
    """Rank 0's end under torchrun: commands are broadcast over a gloo group (CPU objects)."""

    def __init__(self, group: dist.ProcessGroup) -> None:
        self.group = group

    def post(self, command: Command) -> None:
        dist.broadcast_object_list([command], src=0, group=self.group)

    def request(self, command: Command) -> None:
        self.post(command)
        answers: list = [None] * dist.get_world_size(self.group)
        dist.all_gather_object(answers, None, group=self.group)
        errors = [f"rank {r}: {e}" for r, e in enumerate(answers) if e is not None]
        if errors:
            raise ParallelWorkerError(f"Workers failed to {type(command).__name__.lower()}: " + "; ".join(errors))

    def check(self) -> None:
        return None

    def fail(self, exc: BaseException) -> ParallelWorkerError:
        return ParallelWorkerError(_failure_text(exc, []))


class BroadcastInbox:
    """A torchrun worker's end of :class:`BroadcastLink`."""

    def __init__(self, group: dist.ProcessGroup) -> None:
        self.group = group

    def receive(self) -> Command | None:
        box: list = [None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def answer(self, command: Command, error: str | None) -> None:
        if isinstance(command, Forward):  # rank 0 is inside the forward's collectives, not listening
            return
        answers: list = [None] * dist.get_world_size(self.group)
        dist.all_gather_object(answers, error, group=self.group)
