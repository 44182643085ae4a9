"""Shared helpers of the GPU benchmarks: CUDA-event timing, peak memory and relative error."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def time_cuda(fn: Callable[[], torch.Tensor], runs: int, warmup: int = 1) -> tuple[float, float, torch.Tensor]:
    """(median ms, peak GiB, last output) of ``fn()`` over ``runs`` timed calls after ``warmup`` calls."""
    out = None
    for _ in range(warmup):
        out = fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), torch.cuda.max_memory_allocated() / 2**30, out


@dataclass
class Timing:
    """Median seconds of the timed calls; peak GiB allocated during a call above what was allocated before it."""

    seconds: float
    peak_gib: float
    out: torch.Tensor


def measure(fn: Callable[[], torch.Tensor], runs: int, warmup: int = 1) -> Timing:
    """Time ``fn()`` on any device (CUDA events on CUDA, the wall clock elsewhere); peak memory on CUDA only."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    out = None
    for _ in range(warmup):
        out = fn()
    times, peak = [], 0.0
    for _ in range(runs):
        out = None  # the previous output is not part of this call's memory
        if cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000)
            peak = max(peak, (torch.cuda.max_memory_allocated() - base) / 2**30)
        else:
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
    return Timing(statistics.median(times), peak, out)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    return float((a.double() - b.double()).norm() / b.double().norm())
