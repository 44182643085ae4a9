"""The pool of servers a batch runs on: who is up, who is least busy, backoff for those that are down.

A server that fails a request is marked down and retried after 1, 2, 4 ... ``backoff_max_s`` seconds; its
jobs go back to the batch queue (so another server takes them). Prompts we gave up on are cancelled on it
when it answers again, so a server that was only unreachable does not run them twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .client import ComfyServer
from .convert import missing_node_types
from .errors import ServerDown, ServerError

log = logging.getLogger(__name__)


@dataclass
class Listener:
    """What a running job wants to hear from the server's /ws: progress, and when to look again."""

    wake: asyncio.Event
    on_event: Callable[[str, dict], None]


@dataclass
class ServerSlot:
    server: ComfyServer
    dispatch: bool = True  # False: only followed for prompts queued by an earlier run
    object_info: dict | None = None
    up: bool = False
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""
    unusable: str = ""  # why this server cannot run the workflow (missing node types)
    ours: set[str] = field(default_factory=set)  # job ids this run has on it (uploading, queued, running)
    posting: int = 0  # of those, not posted yet (so not in its /queue)
    uploaded: dict[str, str] = field(default_factory=dict)  # our upload name -> the name the server uses
    abandoned: list[str] = field(default_factory=list)  # prompt ids requeued elsewhere; cancel on recovery
    listeners: dict[str, Listener] = field(default_factory=dict)  # prompt id -> listener

    @property
    def url(self) -> str:
        return self.server.url

    def mark_down(self, reason: str, backoff_max_s: float) -> None:
        if self.up or not self.failures:
            log.warning("server %s is down (%s): retrying with backoff; its jobs go to other servers", self.url, reason)
        self.up, self.last_error = False, reason
        self.failures += 1
        self.retry_at = time.monotonic() + min(backoff_max_s, 2.0 ** (self.failures - 1))

    def due(self) -> bool:
        return self.up or time.monotonic() >= self.retry_at


class ServerPool:
    def __init__(self, servers: list[ComfyServer], class_types: set[str], per_server: int, backoff_max_s: float):
        self.slots = [ServerSlot(s) for s in servers]
        self.class_types = class_types
        self.per_server = per_server
        self.backoff_max_s = backoff_max_s

    def slot_for(self, url: str) -> ServerSlot:
        """The slot of a server URL; one that only follows old prompts when it is not in this run's list."""
        for slot in self.slots:
            if slot.url == url:
                return slot
        slot = ServerSlot(ComfyServer(url), dispatch=False)
        self.slots.append(slot)
        return slot

    def mark_down(self, slot: ServerSlot, reason: str) -> None:
        slot.mark_down(reason, self.backoff_max_s)

    async def _recover(self, slot: ServerSlot) -> None:
        """First answer after being down (or ever): check its node types, cancel abandoned prompts."""
        if slot.object_info is None and slot.dispatch:
            slot.object_info = await slot.server.object_info()
        if slot.object_info is not None and (missing := missing_node_types(self.class_types, slot.object_info)):
            slot.unusable = f"lacks node types {missing}"
            log.error("server %s cannot run this workflow: it %s (install the node packs)", slot.url, slot.unusable)
        if slot.abandoned:
            await slot.server.cancel(slot.abandoned)
            slot.abandoned.clear()
        if slot.failures:
            log.warning("server %s answers again", slot.url)
        slot.up, slot.failures, slot.uploaded = True, 0, {}

    async def load(self, slot: ServerSlot) -> int | None:
        """Prompts in the server's queue (everyone's) plus ours not posted yet; None when it is down."""
        try:
            running, pending = await slot.server.queue()
            if not slot.up:
                await self._recover(slot)
        except (ServerDown, ServerError) as exc:
            self.mark_down(slot, str(exc))
            return None
        return len(running) + len(pending) + slot.posting

    async def pick(self) -> ServerSlot | None:
        """The least busy server that is up and below ``per_server`` of our jobs; None if there is none now."""
        best: tuple[int, int, int, ServerSlot] | None = None
        for index, slot in enumerate(self.slots):
            if not slot.dispatch or slot.unusable or not slot.due() or len(slot.ours) >= self.per_server:
                continue
            load = await self.load(slot)
            if load is None or slot.unusable:
                continue
            key = (load, len(slot.ours), index, slot)
            best = key if best is None or key[:3] < best[:3] else best
        return best[3] if best else None

    async def cancel_abandoned(self) -> None:
        """At the end of a batch: cancel prompts we requeued elsewhere on servers that answer again."""
        for slot in (s for s in self.slots if s.abandoned):
            try:
                await slot.server.cancel(slot.abandoned)
                slot.abandoned.clear()
            except (ServerDown, ServerError) as exc:
                log.warning(
                    "%s: prompts %s were queued elsewhere and may still run there (%s)", slot.url, slot.abandoned, exc
                )

    def usable(self) -> list[ServerSlot]:
        return [s for s in self.slots if s.dispatch and not s.unusable]

    async def close(self) -> None:
        for slot in self.slots:
            await slot.server.close()
