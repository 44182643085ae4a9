"""Time spent waiting on collectives, for the benchmark's "communication share" column.

Off by default (:data:`NO_TIMER` measures nothing). On accelerators the timer records
device events around each collective (read once, after a synchronise); on the CPU it
reads the wall clock, since gloo collectives block.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Protocol

import torch


class DeviceEvent(Protocol):
    """What the timer uses of an accelerator's event type (torch.cuda.Event, torch.xpu.Event, ...)."""

    def record(self) -> None: ...

    def synchronize(self) -> None: ...

    def elapsed_time(self, end_event: DeviceEvent) -> float: ...


class CommTimer:
    """Accumulates the duration of the collectives run inside :meth:`measure`."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self._events: list[tuple[DeviceEvent, DeviceEvent]] = []
        self._cpu_seconds = 0.0

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        module = getattr(torch, self.device.type, None)
        event_type = getattr(module, "Event", None) if self.device.type != "cpu" else None
        if event_type is None:
            started = time.perf_counter()
            yield
            self._cpu_seconds += time.perf_counter() - started
            return
        start, end = event_type(enable_timing=True), event_type(enable_timing=True)
        start.record()
        yield
        end.record()
        self._events.append((start, end))

    def seconds(self) -> float:
        """Total measured time (synchronises the device once)."""
        if self._events:
            self._events[-1][1].synchronize()
        device_ms = sum(start.elapsed_time(end) for start, end in self._events)
        return self._cpu_seconds + device_ms / 1000.0

    def reset(self) -> None:
        self._events.clear()
        self._cpu_seconds = 0.0


class _NoTimer(CommTimer):
    def __init__(self) -> None:
        super().__init__(torch.device("cpu"))

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        yield


NO_TIMER: CommTimer = _NoTimer()
