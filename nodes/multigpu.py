"""Multi-GPU models inside ComfyUI: the ComfyUI process is rank 0, spawned workers are the others.

The Model Loader's ``gpus`` input ("0,1") starts a :class:`WorkerPool`: one persistent
process per extra device (torch.multiprocessing, spawn), joined with this process in a
torch.distributed group (NCCL on CUDA, gloo on CPU). Each worker loads the same weights
as rank 0 and keeps them between prompts; the sampler's DiT calls go to every rank
(``wan_core.parallel.service``). Rank 0's copies are under ComfyUI's memory manager; workers
stop when it unloads them (e.g. "unload models" / ``/free``) or the handle is garbage-collected,
when ComfyUI exits, or - if
ComfyUI is killed - when they notice their parent is gone. A dead worker surfaces as a
``ParallelWorkerError``; the next run starts fresh workers.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import weakref
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from wan_core.errors import InputError, ParallelError
from wan_core.parallel import Layout, ParallelOptions
from wan_core.parallel.distributed import RankInfo, init_group, teardown
from wan_core.parallel.links import QueueLink
from wan_core.parallel.local import free_port
from wan_core.parallel.service import DiTSpec, Leader, LoraState, ParallelDiT
from wan_core.parallel.worker import worker_main
from wan_core.sampling import Experts

from . import comfy_bridge as bridge

log = logging.getLogger(__name__)

_STOP_GRACE_S = 10.0


def parse_gpus(text: str, device_type: str | None = None) -> list[torch.device]:
    """'0,1' -> [cuda:0, cuda:1] (the type of ComfyUI's device); 'cpu,cpu' -> two CPU ranks; '' -> []."""
    entries = [e.strip() for e in (text or "").split(",") if e.strip()]
    if not entries:
        return []
    kind = device_type or bridge.compute_device().type
    devices = []
    for entry in entries:
        try:
            devices.append(torch.device(kind, int(entry)) if entry.isdigit() else torch.device(entry))
        except (RuntimeError, ValueError):
            raise InputError(f"gpus entry {entry!r} is not a device index or name; write e.g. '0,1'.") from None
    if len(devices) < 2:
        raise InputError(f"gpus lists {len(devices)} device; list two or more (e.g. '0,1'), or leave it empty.")
    if len({d.type for d in devices}) != 1:
        raise InputError(f"gpus mixes device types ({text!r}); use devices of one kind.")
    if devices[0].type != "cpu" and len({d.index for d in devices}) != len(devices):
        raise InputError(f"gpus lists a device twice ({text!r}); each rank needs its own device.")
    _check_indices(devices)
    return devices


def _check_indices(devices: list[torch.device]) -> None:
    """Fail at once on an index this process cannot see (e.g. CUDA_VISIBLE_DEVICES hides it)."""
    module = getattr(torch, devices[0].type, None)
    if devices[0].type == "cpu" or module is None or not hasattr(module, "device_count") or not module.is_available():
        return
    count = module.device_count()
    missing = [str(d) for d in devices if (d.index or 0) >= count]
    if missing:
        raise InputError(
            f"gpus names {', '.join(missing)}, but this process sees {count} {devices[0].type} device(s) "
            "(indices start at 0 and follow CUDA_VISIBLE_DEVICES / ComfyUI's --cuda-device)."
        )


@contextlib.contextmanager
def _children_skip_host_main() -> Iterator[None]:
    """Spawned children re-run the parent's ``__main__`` unless it has no file: hide ComfyUI's main.py.

    Re-running it would parse ComfyUI's arguments, run every pack's prestartup script and
    initialise CUDA on the default device in each worker.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


@contextlib.contextmanager
def _children_find_wan_core() -> Iterator[None]:
    """Spawned children start from the parent's ``sys.path``, and unpickle their target from ``wan_core``.

    Inside ComfyUI the pack registers ``wan_core`` without touching ``sys.path`` (see the pack's
    ``__init__.py``), so a child could not import it: while the workers start, the folder holding
    ``wan_core`` is appended (last: it shadows nothing that the path already provides).
    """
    import wan_core

    folder = str(Path(wan_core.__file__).resolve().parent.parent)
    if folder in sys.path:
        yield
        return
    sys.path.append(folder)
    try:
        yield
    finally:
        sys.path.remove(folder)


class WorkerPool:
    """Rank 0 (this process) plus one spawned worker per extra device, in one process group."""

    def __init__(self, devices: list[torch.device], options: ParallelOptions) -> None:
        self.devices, self.options = devices, options
        self.models: dict[str, DiTSpec] = {}
        self.stopped: str | None = None
        self._next_key = 0
        ctx = mp.get_context("spawn")
        self.answers = ctx.Queue()
        self.commands = [ctx.Queue() for _ in devices[1:]]
        init_method = f"tcp://127.0.0.1:{free_port()}"
        self.processes = []
        with _children_skip_host_main(), _children_find_wan_core():
            for rank, device in enumerate(devices[1:], start=1):
                args = (rank, len(devices), str(device), init_method, options, self.commands[rank - 1], self.answers)
                proc = ctx.Process(target=worker_main, args=args, daemon=True, name=f"wan-worker-{rank}")
                proc.start()
                self.processes.append(proc)
        try:
            init_group(RankInfo(0, len(devices), devices[0]), init_method, options.timeout_s)
        except (RuntimeError, ValueError) as exc:
            self.shutdown()
            raise ParallelError(f"The GPU workers did not join the process group ({exc}); see the console.") from exc
        link = QueueLink(self.commands, self.answers, self.watch, self.shutdown)
        self.leader = Leader(Layout(options, devices[0]), link)
        log.info("Started %d GPU worker(s): %s", len(self.processes), ", ".join(map(str, devices)))

    @property
    def running(self) -> bool:
        return self.stopped is None

    def watch(self) -> str | None:
        """A description of the first dead worker, or None when all are alive."""
        for rank, proc in enumerate(self.processes, start=1):
            if not proc.is_alive():
                return f"worker rank {rank} ({self.devices[rank]}) exited with code {proc.exitcode}"
        return None

    def load(self, spec: DiTSpec, park: bool = False) -> str:
        self._next_key += 1
        key = f"dit{self._next_key}"
        self.leader.load(key, spec, park)
        self.models[key] = spec
        return key

    def release(self, keys: list[str]) -> None:
        """Drop models whose handle is gone; stop the workers when none is left."""
        if not self.running:
            return
        for key in keys:
            if self.models.pop(key, None) is not None:
                self.leader.drop(key)
        if not self.models:
            self.stop("no multi-GPU model is loaded any more")

    def stop(self, reason: str) -> None:
        """Ask the workers to exit, wait a little, then end the process group."""
        if not self.running:
            return
        with contextlib.suppress(OSError, ValueError):
            self.leader.stop()
        for proc in self.processes:
            proc.join(_STOP_GRACE_S)
        self.shutdown(reason)

    def shutdown(self, reason: str = "a worker failed") -> None:
        """Terminate whatever still runs and leave the process group (also after a failure)."""
        if self.stopped is not None:
            return
        self.stopped = reason
        for proc in self.processes:
            if proc.is_alive():
                proc.terminate()
        for proc in self.processes:
            proc.join(_STOP_GRACE_S)
        for q in [*self.commands, self.answers]:
            q.close()
            q.cancel_join_thread()  # a dead reader must not block this process's exit
        teardown()
        log.info("GPU workers stopped: %s.", reason)


_lock = threading.RLock()
_pool: WorkerPool | None = None


def pool_for(devices: list[torch.device], options: ParallelOptions | None = None) -> WorkerPool:
    """The running pool on exactly these devices, else a new one (stopping another pool first)."""
    global _pool
    options = options or default_options()
    with _lock:
        if _pool is not None and _pool.running and (_pool.devices, _pool.options) == (devices, options):
            return _pool
        if _pool is not None:
            _pool.stop(f"the GPU set changed to {', '.join(map(str, devices))}")
        _pool = WorkerPool(devices, options)
        return _pool


def active_pool() -> WorkerPool | None:
    return _pool


@atexit.register
def _stop_at_exit() -> None:
    if _pool is not None:
        _pool.stop("ComfyUI is exiting")


class ParallelModels:
    """The multi-GPU side of a WanModelHandle: rank 0's DiTs, their worker keys, and the pool.

    When ComfyUI drops the handle (its cache let go of the loader's output) this object is
    collected and the workers drop the weights. After a worker failure the next use starts
    a new pool and reloads the workers from the same specs.
    """

    def __init__(self, devices: list[torch.device], specs: dict[str, DiTSpec], locals_: dict[str, Any]) -> None:
        self.devices = devices
        self.specs = specs  # "high" / "low" -> what the workers load
        self.locals = locals_  # "high" / "low" -> rank 0's DiT
        self.pool: WorkerPool | None = None
        self.keys: dict[str, str] = {}
        self._finalizer: weakref.finalize | None = None
        self.ensure_running()

    def ensure_running(self) -> WorkerPool:
        """The running pool holding this model (started and loaded again after a failure)."""
        with _lock:
            if self.pool is not None and self.pool.running:
                return self.pool
            if self._finalizer is not None:
                self._finalizer.detach()
            pool = self.pool = pool_for(self.devices)
            self.keys = {role: pool.load(spec, park=role == "low") for role, spec in self.specs.items()}
            self._finalizer = weakref.finalize(self, pool.release, list(self.keys.values()))
            return pool

    def stop_workers(self) -> None:
        """ComfyUI's manager unloaded rank 0's model: the workers drop theirs (the next run reloads them)."""
        with _lock:
            if self._finalizer is not None and self._finalizer.alive:
                self._finalizer()  # releases this model's keys; the pool stops when none is left
            self.pool = None

    def describe(self) -> str:
        return f"{len(self.devices)} ranks on {', '.join(map(str, self.devices))}"

    def sampling_target(self, target: Any, loras: tuple) -> Any:
        """The sampler's model with every DiT replaced by its multi-GPU stand-in."""
        leader = self.ensure_running().leader
        if isinstance(target, Experts):
            high, low = self._proxy(leader, "high", loras, "high"), self._proxy(leader, "low", loras, "low")
            return replace(target, high=high, low=low)
        return self._proxy(leader, "high", loras, None)

    def _proxy(self, leader: Leader, role: str, loras: tuple, expert: str | None) -> ParallelDiT:
        return ParallelDiT(leader, self.keys[role], self.locals[role], LoraState(tuple(loras), expert))


def _check_first_device(devices: list[torch.device]) -> None:
    """Rank 0 is this process, so it computes on ComfyUI's own device: the first entry must name it."""
    home = bridge.compute_device()
    first = devices[0]
    if first.type != home.type or (first.type != "cpu" and (first.index or 0) != (home.index or 0)):
        raise InputError(
            f"gpus starts with {first}, but ComfyUI computes on {home}: list ComfyUI's device first "
            f"(e.g. '{home.index or 0},1'), the workers use the others."
        )


def default_options() -> ParallelOptions:
    """Defaults, with the collective timeout from $WAN_CORE_PARALLEL_TIMEOUT_S when set."""
    timeout_s = os.environ.get("WAN_CORE_PARALLEL_TIMEOUT_S")
    return ParallelOptions(timeout_s=float(timeout_s)) if timeout_s else ParallelOptions()


def load_parallel(gpus: str, specs: dict[str, DiTSpec]) -> tuple[dict[str, Any], ParallelModels]:
    """Load each spec on rank 0 (the first device) and on every worker; (rank 0's DiTs, ParallelModels)."""
    devices = parse_gpus(gpus)
    _check_first_device(devices)
    offload = bridge.placement("diffusion").offload
    locals_ = {}
    for role, spec in specs.items():
        home = offload if role == "low" else devices[0]
        locals_[role] = spec.load(home, offload)
    parallel = ParallelModels(devices, specs, locals_)
    for role, dit in locals_.items():  # rank 0's copies under ComfyUI's manager: unloading them stops the workers
        bridge.manage(dit, bridge.placement("diffusion"), specs[role].block_swap, on_unload=parallel.stop_workers)
    return locals_, parallel
