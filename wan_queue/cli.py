"""``python -m wan_queue run|status``: batch queueing through ComfyUI's HTTP API (see docs/QUEUE.md).

Exit codes: 0 every job completed, 1 a job failed or a QueueError (the message says what to do),
2 bad command-line syntax, 130 interrupted (Ctrl-C; the manifest stays consistent, rerun to resume).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .client import DEFAULT_SERVER, ComfyServer
from .convert import is_ui_workflow, ui_to_api
from .errors import NoServerError, QueueError, ServerDown, WorkflowError
from .jobs import Job, make_jobs
from .params import expand_jobs, parse_seeds, parse_set, parse_sweep, read_batch
from .runner import BatchRunner, RunOptions
from .servers import ServerPool
from .status import status_report

log = logging.getLogger("wan_queue")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wan_queue", description=__doc__.split("\n")[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="queue a workflow's jobs, download their outputs, resume on rerun")
    run.add_argument("workflow", type=Path, help="workflow JSON, UI or API format")
    run.add_argument("--batch", type=Path, help="jobs.csv (header of KEYs) or jobs.jsonl ({KEY: value} per line)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set an input for every job")
    run.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2", help="cartesian product of values")
    run.add_argument("--seeds", help="seed list: 1-8, 3 or 1,5,10-12 (sets seed and noise_seed)")
    run.add_argument("--server", action="append", default=[], metavar="HOST:PORT", help=f"default {DEFAULT_SERVER}")
    run.add_argument("--out", type=Path, default=Path("wan_queue_out"), help="outputs and manifest.jsonl")
    run.add_argument("--per-server", type=int, default=2, help="our prompts on one server at a time")
    run.add_argument("--give-up-after", type=float, default=600.0, metavar="S", help="stop when no server answers")
    run.add_argument("--object-info", type=Path, help="a saved /object_info for converting a UI workflow")
    run.add_argument("--dry-run", action="store_true", help="list the jobs (id and parameters); queue nothing")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    status = sub.add_parser("status", help="what is done, running and failed in an output folder")
    status.add_argument("out", type=Path, help="the --out folder of a run")
    status.add_argument("--offline", action="store_true", help="do not ask the servers about queued jobs")
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)


async def _first_object_info(servers: list[ComfyServer], give_up_s: float) -> tuple[ComfyServer, dict]:
    """/object_info of the first server that answers, retrying with backoff for up to ``give_up_s``."""
    deadline, delay, errors = time.monotonic() + give_up_s, 1.0, {}
    while True:
        for server in servers:
            try:
                return server, await server.object_info()
            except ServerDown as exc:
                errors[server.url] = str(exc)
        if time.monotonic() > deadline:
            raise NoServerError(f"no server answered within {give_up_s:.0f} s: {errors}")
        log.warning("no server answers yet (%s); retrying in %.0f s", ", ".join(errors), delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


def _api_graph(workflow: dict, object_info: dict | None) -> dict:
    if is_ui_workflow(workflow):
        if object_info is None:
            raise WorkflowError("a UI-format workflow needs a server's /object_info (or --object-info FILE)")
        return ui_to_api(workflow, object_info)
    bad = [k for k, v in workflow.items() if not (isinstance(v, dict) and "class_type" in v and "inputs" in v)]
    if bad:
        raise WorkflowError(
            f"not a UI workflow (nodes + links) nor an API one: entries {bad[:5]} have no class_type/inputs"
        )
    return workflow


def _jobs(args: argparse.Namespace, workflow: dict, object_info: dict | None) -> list[Job]:
    api = _api_graph(workflow, object_info)
    params = expand_jobs(
        read_batch(args.batch) if args.batch else None,
        [parse_set(s) for s in args.set],
        [parse_sweep(s) for s in args.sweep],
        parse_seeds(args.seeds) if args.seeds else None,
    )
    return make_jobs(api, params, object_info)


def _load_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WorkflowError(f"cannot read the {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise WorkflowError(f"the {what} {path} is not a JSON object")
    return data


async def _run(args: argparse.Namespace) -> int:
    workflow = _load_json(args.workflow, "workflow")
    servers = [ComfyServer(a) for a in args.server or [DEFAULT_SERVER]]
    object_info = _load_json(args.object_info, "--object-info file") if args.object_info else None
    source = None
    pool = ServerPool(servers, set(), args.per_server, backoff_max_s=30.0)
    try:
        if object_info is None and not (args.dry_run and not is_ui_workflow(workflow)):
            source, object_info = await _first_object_info(servers, args.give_up_after)
        jobs = _jobs(args, workflow, object_info)
        if args.dry_run:
            sys.stdout.write("".join(f"{job.id} {json.dumps(job.params, ensure_ascii=False)}\n" for job in jobs))
            return 0
        pool.class_types = {n["class_type"] for job in jobs for n in job.prompt.values()}
        for slot in pool.slots:
            slot.object_info = object_info if slot.server is source else None
        options = RunOptions(args.out, give_up_s=args.give_up_after, progress=False if args.no_progress else None)
        summary = await BatchRunner(jobs, pool, options).run()
    finally:
        await pool.close()
    sys.stdout.write(summary.line() + f" -> {args.out / 'manifest.jsonl'}\n")
    return 1 if summary.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    _setup_logging(args)
    try:
        if args.command == "status":
            text, code = status_report(args.out, ask_servers=not args.offline)
            sys.stdout.write(text)
            return code
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():
            return asyncio.run(_run(args))
    except QueueError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted: the manifest is consistent; rerun the same command to resume")
        return 130
