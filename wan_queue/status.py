"""``python -m wan_queue status OUT``: what the manifest says is done, running and failed.

Jobs whose last line is ``queued`` are looked up on their server (unless ``--offline``): running,
waiting, or lost (the server restarted; a rerun queues them again).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from .client import ComfyServer
from .errors import ServerDown
from .manifest import COMPLETED, FAILED, QUEUED, Manifest, outputs_present

_SHOWN = {"running": "running", "pending": "waiting", "done": "finished, not collected", "unknown": "lost"}


async def _live_states(records: list[dict]) -> dict[str, str]:
    """{prompt id: running | waiting | lost | unreachable} for queued records, one /queue call per server."""
    states: dict[str, str] = {}
    for url in sorted({r["server"] for r in records}):
        server = ComfyServer(url, timeout_s=5.0)
        try:
            queue = await server.queue()
            for record in (r for r in records if r["server"] == url):
                state, _ = await server.prompt_state(record["prompt_id"], queue)
                states[record["prompt_id"]] = _SHOWN[state]
        except ServerDown:
            states.update({r["prompt_id"]: "server unreachable" for r in records if r["server"] == url})
        finally:
            await server.close()
    return states


def _line(record: dict, detail: str) -> str:
    return (
        f"{record['status']:<9} {record['job']} {json.dumps(record.get('params', {}), ensure_ascii=False)} {detail}\n"
    )


def status_report(out_dir: Path, ask_servers: bool = True) -> tuple[str, int]:
    """(text, exit code): 0 when every job of the manifest completed, 1 otherwise."""
    manifest = Manifest(out_dir)
    if not manifest.path.exists():
        return f"{manifest.path} does not exist: nothing was run with --out {out_dir}\n", 1
    latest = list(manifest.latest().values())
    queued = [r for r in latest if r["status"] == QUEUED]
    live = asyncio.run(_live_states(queued)) if ask_servers and queued else {}
    lines, counts = [], {COMPLETED: 0, QUEUED: 0, FAILED: 0}
    for record in latest:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
        if record["status"] == COMPLETED:
            files = ", ".join(o["file"] for o in record.get("outputs", []))
            missing = "" if outputs_present(record, out_dir) else " (outputs missing: a rerun makes them again)"
            lines.append(_line(record, f"{record.get('seconds', '?')} s {files}{missing}"))
        elif record["status"] == QUEUED:
            state = live.get(record["prompt_id"], "queued")
            lines.append(_line(record, f"on {record['server']} (prompt {record['prompt_id']}: {state})"))
        else:
            error = "".join(f"\n    {line}" for line in (record.get("error") or "").splitlines())
            lines.append(_line(record, error))
    head = (
        f"{manifest.path}: {len(latest)} jobs: {counts[COMPLETED]} completed, "
        f"{counts[QUEUED]} queued or running, {counts[FAILED]} failed\n"
    )
    return head + "".join(lines), 0 if counts[COMPLETED] == len(latest) else 1
