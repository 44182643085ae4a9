"""Runs a batch of jobs on a pool of ComfyUI servers, with resume.

Per job: upload its local files, append a ``queued`` manifest line (server + prompt id), POST ``/prompt``,
follow it (``/ws`` for progress and wake-ups, ``/queue`` + ``/history`` as the truth), download every
output through ``/view`` into ``OUT/<job id>/`` and append a ``completed`` line.

Resume: completed jobs (outputs still on disk) are skipped. A job whose last line is ``queued`` is looked
up on its server: still queued or running -> followed; in the history -> collected; unknown to the server
(it restarted) -> queued again. A job is only queued again once its server has said twice that it does not
know the prompt, or is down (and then the prompt is cancelled there when it answers again).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from .errors import NoServerError, PromptRejected, QueueError, ServerDown, ServerError, WorkflowError
from .jobs import Job
from .manifest import COMPLETED, FAILED, QUEUED, Manifest, outputs_present
from .report import describe_execution_error, describe_rejection
from .servers import Listener, ServerPool, ServerSlot

log = logging.getLogger(__name__)

TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path
    poll_s: float = 1.0
    give_up_s: float = 600.0  # stop when no server could take a job for this long
    progress: bool | None = None  # None: bars only on a terminal


@dataclass
class Summary:
    jobs: int = 0
    skipped: int = 0  # completed by an earlier run
    completed: int = 0
    failed: int = 0
    posted: int = 0  # prompts queued on a server by this run
    requeued: int = 0

    def line(self) -> str:
        return (
            f"{self.jobs} jobs: {self.completed} completed now, {self.skipped} already done, {self.failed} failed; "
            f"{self.posted} prompts queued, {self.requeued} queued again"
        )


class BatchRunner:
    def __init__(self, jobs: list[Job], pool: ServerPool, options: RunOptions):
        self.jobs, self.pool, self.options = jobs, pool, options
        self.manifest = Manifest(options.out_dir)
        self.todo: deque[Job] = deque()
        self.summary = Summary(jobs=len(jobs))
        self.overall: tqdm | None = None
        self.errors_seen: dict[str, str] = {}  # message -> first job that failed with it
        self.active: set[asyncio.Task] = set()  # job tasks

    # ------------------------------------------------------------------ main loop

    async def run(self) -> Summary:
        latest = self.manifest.latest()
        resume = []
        for job in self.jobs:
            record = latest.get(job.id)
            if record and record["status"] == COMPLETED and outputs_present(record, self.options.out_dir):
                self.summary.skipped += 1
            elif record and record["status"] == QUEUED:
                resume.append((job, record))
            else:
                self.todo.append(job)
        log.info(
            "%d jobs: %d already done, %d to resume, %d to queue",
            len(self.jobs),
            self.summary.skipped,
            len(resume),
            len(self.todo),
        )
        self.overall = tqdm(
            total=len(self.jobs), initial=self.summary.skipped, desc="jobs", unit="job", disable=self._no_bars()
        )
        listeners = [asyncio.create_task(self._listen(slot)) for slot in self.pool.slots]
        try:
            self.active = {asyncio.create_task(self._resume(job, record)) for job, record in resume}
            await self._dispatch()
            await self.pool.cancel_abandoned()
        finally:  # on Ctrl-C too: job tasks end (temp files removed), the manifest holds whole lines only
            tasks = [*listeners, *self.active]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.overall.close()
        return self.summary

    def _no_bars(self) -> bool | None:
        return None if self.options.progress is None else not self.options.progress

    async def _dispatch(self) -> None:
        stuck_since: float | None = None
        while self.todo or self.active:
            slot = await self.pool.pick() if self.todo else None
            if slot is not None:
                stuck_since = None
                job = self.todo.popleft()
                slot.ours.add(job.id)
                self.active.add(asyncio.create_task(self._run_job(job, slot)))
                continue
            if self.todo and not self.pool.usable():
                raise WorkflowError("no server can run this workflow: " + self._server_states())
            if self.todo and not self.active:
                stuck_since = stuck_since or time.monotonic()
                if time.monotonic() - stuck_since > self.options.give_up_s:
                    raise NoServerError(
                        f"no server took a job for {self.options.give_up_s:.0f} s: {self._server_states()}. "
                        "Start them and rerun the same command: finished jobs are kept, queued ones resumed."
                    )
            await self._wait_some()

    async def _wait_some(self) -> None:
        """Until a job task ends or ``poll_s`` passes (a server may have room again)."""
        if not self.active:
            await asyncio.sleep(self.options.poll_s)
            return
        done, self.active = await asyncio.wait(
            self.active, timeout=self.options.poll_s, return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            task.result()  # a bug inside a job task must not pass silently

    def _server_states(self) -> str:
        return "; ".join(
            f"{s.url}: {s.unusable or ('up' if s.up else s.last_error or 'not reached')}" for s in self.pool.slots
        )

    # ------------------------------------------------------------------ one job

    async def _run_job(self, job: Job, slot: ServerSlot) -> None:
        prompt_id, started = str(uuid.uuid4()), time.time()
        try:
            slot.posting += 1
            try:
                prompt = await self._with_uploads(job, slot)
                self._record(job, QUEUED, slot, prompt_id, queued_at=started)
                answer = await slot.server.submit(prompt, prompt_id)
                self.summary.posted += 1
            finally:
                slot.posting -= 1
            if answer.get("node_errors"):
                message = await describe_rejection(slot.server, answer, job.prompt, slot.object_info or {})
                log.warning("job %s: some outputs will not run:\n%s", job.id, message)
            await self._follow(job, slot, prompt_id, started)
        except PromptRejected as exc:
            message = await describe_rejection(slot.server, exc.body, job.prompt, slot.object_info or {})
            self._failed(job, slot, prompt_id, message)
        except ServerDown as exc:
            self._lost(job, slot, prompt_id, str(exc))
        except QueueError as exc:  # e.g. an output the server cannot serve
            self._failed(job, slot, prompt_id, str(exc))
        finally:
            slot.ours.discard(job.id)

    async def _resume(self, job: Job, record: dict) -> None:
        slot = self.pool.slot_for(record["server"])
        slot.ours.add(job.id)
        try:
            await self._follow(job, slot, record["prompt_id"], record.get("queued_at", time.time()))
        except ServerDown as exc:
            self._lost(job, slot, record["prompt_id"], str(exc))
        except QueueError as exc:
            self._failed(job, slot, record["prompt_id"], str(exc))
        finally:
            slot.ours.discard(job.id)

    async def _with_uploads(self, job: Job, slot: ServerSlot) -> dict:
        renamed = {}
        for local in job.files:
            if local.upload_name not in slot.uploaded:
                slot.uploaded[local.upload_name] = await slot.server.upload(local)
            if slot.uploaded[local.upload_name] != local.upload_name:
                renamed[local.upload_name] = slot.uploaded[local.upload_name]
        if not renamed:
            return job.prompt
        return {
            nid: {**n, "inputs": {k: renamed.get(v, v) if isinstance(v, str) else v for k, v in n["inputs"].items()}}
            for nid, n in job.prompt.items()
        }

    def _lost(self, job: Job, slot: ServerSlot, prompt_id: str, reason: str) -> None:
        self.pool.mark_down(slot, reason)
        slot.abandoned.append(prompt_id)
        self._requeue(job, f"server {slot.url} is down")

    def _requeue(self, job: Job, why: str) -> None:
        log.warning("job %s: %s; queueing it again", job.id, why)
        self.summary.requeued += 1
        self.todo.appendleft(job)

    async def _follow(self, job: Job, slot: ServerSlot, prompt_id: str, started: float) -> None:
        bar = tqdm(total=1, desc=f"{job.id[:8]} queued", leave=False, disable=self._no_bars(), unit="step")
        listener = Listener(asyncio.Event(), lambda kind, data: _show_event(bar, job, kind, data))
        slot.listeners[prompt_id] = listener
        unknown = 0
        try:
            while True:
                state, entry = await slot.server.prompt_state(prompt_id)
                if state == "done":
                    return await self._finish(job, slot, prompt_id, entry, started)
                unknown = unknown + 1 if state == "unknown" else 0
                if unknown >= 2:
                    return self._requeue(job, f"{slot.url} no longer knows prompt {prompt_id} (restarted?)")
                listener.wake.clear()
                try:
                    await asyncio.wait_for(listener.wake.wait(), timeout=self.options.poll_s)
                except asyncio.TimeoutError:
                    pass
        finally:
            slot.listeners.pop(prompt_id, None)
            bar.close()

    async def _finish(self, job: Job, slot: ServerSlot, prompt_id: str, entry: dict, started: float) -> None:
        if entry.get("status", {}).get("status_str") != "success":
            return self._failed(job, slot, prompt_id, describe_execution_error(entry, job.prompt))
        outputs = await self._download(job, slot, entry)
        self._record(job, COMPLETED, slot, prompt_id, outputs=outputs, seconds=round(time.time() - started, 2))
        self.summary.completed += 1
        self.overall.update(1)
        log.info("job %s done on %s: %s", job.id, slot.url, ", ".join(o["file"] for o in outputs))

    async def _download(self, job: Job, slot: ServerSlot, entry: dict) -> list[dict]:
        outputs, used = [], set()
        for node_id, node_out in sorted(entry.get("outputs", {}).items()):
            for kind, items in node_out.items():
                for ref in items if isinstance(items, list) else []:
                    if not (isinstance(ref, dict) and "filename" in ref):
                        continue
                    base = PurePosixPath(str(ref["filename"]).replace("\\", "/")).name  # never a path out of OUT
                    if base in ("", ".", ".."):
                        raise ServerError(f"{slot.url} named an output {ref['filename']!r}: not a file name")
                    name = base if base not in used else f"{node_id}_{base}"
                    used.add(name)
                    rel = Path(job.id) / name
                    sha, size = await slot.server.download(ref, self.options.out_dir / rel)
                    outputs.append(
                        {"node": node_id, "kind": kind, "file": rel.as_posix(), "sha256": sha, "bytes": size}
                    )
        return outputs

    def _failed(self, job: Job, slot: ServerSlot, prompt_id: str, message: str) -> None:
        first = self.errors_seen.setdefault(message, job.id)
        if first == job.id:
            log.error("job %s %s failed:\n%s", job.id, job.params, message)
        else:
            log.error("job %s %s failed: the same errors as job %s", job.id, job.params, first)
        self._record(job, FAILED, slot, prompt_id, error=message)
        self.summary.failed += 1
        self.overall.update(1)

    def _record(self, job: Job, status: str, slot: ServerSlot, prompt_id: str, **fields) -> None:
        record = {"job": job.id, "status": status, "params": job.params, "server": slot.url, "prompt_id": prompt_id}
        self.manifest.append({**record, **fields})

    # ------------------------------------------------------------------ /ws

    async def _listen(self, slot: ServerSlot) -> None:
        """Route the server's events to the jobs following them; reconnect while the batch runs."""
        while True:
            if not slot.up:
                await asyncio.sleep(self.options.poll_s)
                continue
            try:
                async for message in slot.server.events():
                    data = message.get("data") or {}
                    listener = slot.listeners.get(data.get("prompt_id")) if isinstance(data, dict) else None
                    if listener is not None:
                        listener.on_event(message.get("type", ""), data)
                        if message.get("type") in TERMINAL_EVENTS:
                            listener.wake.set()
            except ServerDown as exc:
                log.debug("%s", exc)
                await asyncio.sleep(self.options.poll_s)


def _show_event(bar: tqdm, job: Job, kind: str, data: dict) -> None:
    if kind == "progress":
        bar.total, bar.n = data.get("max", 1), data.get("value", 0)
        bar.set_description(f"{job.id[:8]} {job.title_of(data.get('node'))}", refresh=False)
        bar.refresh()
    elif kind == "executing" and data.get("node") is not None:
        bar.set_description(f"{job.id[:8]} {job.title_of(data['node'])}")
    elif kind == "execution_start":
        bar.set_description(f"{job.id[:8]} running")
