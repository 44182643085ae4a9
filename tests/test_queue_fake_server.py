"""wan_queue against a fake ComfyUI (aiohttp on 127.0.0.1): manifest, resume after a server restart or a
client crash, several servers, Ctrl-C, and the error messages."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from fake_comfyui import FakeComfyUI, graph, manifest_lines, output_bytes, wait_until

from wan_queue.cli import main
from wan_queue.manifest import Manifest


@pytest.fixture
def fake():
    server = FakeComfyUI()
    yield server
    server.close()


def _workflow(tmp_path: Path, **kwargs) -> Path:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(graph(**kwargs)))
    return path


def _run(workflow: Path, out: Path, servers: list[FakeComfyUI], *extra: str) -> int:
    args = ["run", str(workflow), "--out", str(out), "--no-progress", "--give-up-after", "20"]
    return main(args + [a for s in servers for a in ("--server", s.address)] + list(extra))


def _completed(out: Path) -> list[dict]:
    return [r for r in manifest_lines(out) if r["status"] == "completed"]


def _check_outputs(out: Path, records: list[dict]) -> None:
    for record in records:
        (output,) = record["outputs"]
        data = (out / output["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == output["sha256"] and len(data) == output["bytes"]
        assert json.loads(data)["2"]["seed"] == record["params"]["seed"]  # the file of this job, not another's


def test_batch_completes_and_a_rerun_queues_nothing(fake, tmp_path, capsys):
    out = tmp_path / "out"
    sweep = ["--sweep", 'text=["a fox, running","a bird"]', "--seeds", "1-2"]
    assert _run(_workflow(tmp_path), out, [fake], *sweep) == 0
    done = _completed(out)
    assert len(done) == 4 and len({r["job"] for r in done}) == 4 and len(fake.posted) == 4
    assert {(r["params"]["text"], r["params"]["seed"]) for r in done} == {
        (t, s) for t in ("a fox, running", "a bird") for s in (1, 2)
    }
    _check_outputs(out, done)
    assert all(r["server"] == f"http://{fake.address}" and r["seconds"] >= 0 for r in done)
    lines = len(manifest_lines(out))
    assert _run(_workflow(tmp_path), out, [fake], *sweep) == 0
    assert len(fake.posted) == 4 and len(manifest_lines(out)) == lines
    assert "0 prompts queued" in capsys.readouterr().out.splitlines()[-1]


def test_deleted_output_is_made_again(fake, tmp_path):
    out = tmp_path / "out"
    assert _run(_workflow(tmp_path), out, [fake], "--seeds", "1-2") == 0
    first = _completed(out)[0]
    (out / first["outputs"][0]["file"]).unlink()
    assert _run(_workflow(tmp_path), out, [fake], "--seeds", "1-2") == 0
    assert len(fake.posted) == 3 and Manifest(out).latest()[first["job"]]["status"] == "completed"


def test_server_restart_mid_batch_loses_no_job_and_duplicates_none(fake, tmp_path):
    """After the first job the server restarts (queue and history gone): the prompts it lost are queued again."""
    fake.run_s = 0.2
    fake.on_done = lambda server, pid: server.restart_soon(0.5) if len(server.executed) == 1 else None
    out = tmp_path / "out"
    assert _run(_workflow(tmp_path), out, [fake], "--seeds", "1-4") == 0
    done = _completed(out)
    assert len(done) == 4 and len({r["job"] for r in done}) == 4
    _check_outputs(out, done)
    queued = [r for r in manifest_lines(out) if r["status"] == "queued"]
    assert len(queued) > 4, "no prompt was lost by the restart: the test did not test resume"
    assert len(fake.posted) == len(queued)
    assert _run(_workflow(tmp_path), out, [fake], "--seeds", "1-4") == 0
    assert len(fake.posted) == len(queued)


def test_client_crash_resumes_prompts_the_server_still_has(fake, tmp_path):
    """The client stops (Ctrl-C) with prompts queued: a rerun follows them on the server, queues none again."""
    from wan_queue.client import ComfyServer
    from wan_queue.jobs import make_jobs
    from wan_queue.params import expand_jobs
    from wan_queue.runner import BatchRunner, RunOptions
    from wan_queue.servers import ServerPool

    fake.paused = True
    out = tmp_path / "out"
    jobs = make_jobs(graph(), expand_jobs(None, [], [], [1, 2]))

    async def run_until_queued():
        server = ComfyServer(fake.address)
        pool = ServerPool([server], {"FakeLoader", "FakeSave"}, per_server=2, backoff_max_s=1)
        task = asyncio.create_task(BatchRunner(jobs, pool, RunOptions(out, progress=False)).run())
        while len(fake.pending) < 2:
            await asyncio.sleep(0.02)
        task.cancel()  # what Ctrl-C does to asyncio.run's main task
        with pytest.raises(asyncio.CancelledError):
            await task
        await pool.close()

    asyncio.run(run_until_queued())
    assert [r["status"] for r in manifest_lines(out)] == ["queued", "queued"]
    fake.paused = False
    assert _run(_workflow(tmp_path), out, [fake], "--seeds", "1-2") == 0
    assert len(fake.posted) == 2 and len(_completed(out)) == 2


def test_jobs_spread_over_servers_and_avoid_a_down_one(tmp_path):
    a, b, down = FakeComfyUI(run_s=0.1), FakeComfyUI(run_s=0.1), FakeComfyUI()
    down.stop()
    try:
        out = tmp_path / "out"
        assert _run(_workflow(tmp_path), out, [a, down, b], "--seeds", "1-6") == 0
        done = _completed(out)
        assert len(done) == 6
        servers = {r["server"] for r in done}
        assert servers == {f"http://{a.address}", f"http://{b.address}"}, servers
        assert len(a.posted) + len(b.posted) == 6
    finally:
        for server in (a, b, down):
            server.close()


def test_jobs_of_a_server_that_goes_down_go_elsewhere(tmp_path):
    """Server a becomes unreachable after its first job, keeping its queue, and answers again 1.5 s later
    (idle until a client cancels something): its jobs run on b, and the prompts left on a are cancelled
    there, not run twice."""
    a, b = FakeComfyUI(run_s=0.3), FakeComfyUI(run_s=0.3)

    async def unreachable_for_a_while(server):
        await server._stop()
        server.paused, server.resume_on_cancel = True, True
        await asyncio.sleep(1.5)
        await server._start()

    a.on_done = lambda server, pid: (
        asyncio.get_running_loop().create_task(unreachable_for_a_while(server)) if len(server.executed) == 1 else None
    )
    try:
        out = tmp_path / "out"
        assert _run(_workflow(tmp_path), out, [a, b], "--seeds", "1-6") == 0
        done = _completed(out)
        assert len(done) == 6 and len({r["job"] for r in done}) == 6
        assert a.cancelled and not set(a.cancelled) & set(a.executed), (a.cancelled, a.executed)
        # b ran the rest (and a's first job again when a went down before it was downloaded)
        assert a.pending == [] and len(a.executed) == 1 and len(b.executed) in (5, 6), (a.executed, b.executed)
    finally:
        a.close()
        b.close()


def test_local_files_are_uploaded_under_content_names(fake, tmp_path):
    picture = tmp_path / "pic.png"
    picture.write_bytes(b"not really a png")
    out = tmp_path / "out"
    assert _run(_workflow(tmp_path, image="a.png"), out, [fake], "--set", f"Image.image=@{picture}") == 0
    (name,) = fake.uploads
    assert fake.uploads[name] == picture.read_bytes() and name.startswith("pic-") and name.endswith(".png")
    (job,) = _completed(out)
    assert json.loads((out / job["outputs"][0]["file"]).read_bytes())["3"]["image"] == name


def test_missing_model_names_its_folder_and_errors_are_per_node_and_input(fake, tmp_path, caplog):
    out = tmp_path / "out"
    assert _run(_workflow(tmp_path, model="wan_missing.safetensors"), out, [fake], "--seeds", "1-2") == 1
    (failed, _second) = [r for r in manifest_lines(out) if r["status"] == "failed"]
    assert "node 1 (FakeLoader, 'Loader') input 'model_name': Value not in list" in failed["error"]
    assert "'wan_missing.safetensors' is missing" in failed["error"] and "models/diffusion_models/" in failed["error"]
    assert "the same errors as job" in caplog.text


def test_unknown_node_types_are_named(fake, tmp_path, caplog):
    workflow = graph()
    workflow["9"] = {"class_type": "SomePackNode", "inputs": {}}
    path = tmp_path / "w.json"
    path.write_text(json.dumps(workflow))
    assert main(["run", str(path), "--out", str(tmp_path / "o"), "--server", fake.address, "--no-progress"]) == 1
    assert "SomePackNode" in caplog.text and "install" in caplog.text and not fake.posted


def test_ctrl_c_leaves_a_consistent_manifest(fake, tmp_path):
    fake.run_s = 0.3
    out, workflow = tmp_path / "out", _workflow(tmp_path)
    cmd = [sys.executable, "-m", "wan_queue", "run", str(workflow), "--out", str(out), "--server", fake.address]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([*cmd, "--seeds", "1-6", "--no-progress"], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    wait_until(lambda: (out / "manifest.jsonl").exists() and _completed(out))
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err.decode()[-2000:]
    Manifest(out).records()  # every line whole
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)
    assert not list(out.rglob("*.part")), "a half-written download was left behind"
    assert _run(workflow, out, [fake], "--seeds", "1-6") == 0
    done = _completed(out)
    assert len(done) == 6 and len({r["job"] for r in done}) == 6
    assert len(fake.executed) == 6  # every job ran once
    assert len(fake.posted) == 6  # prompts queued before Ctrl-C were followed, not queued again


def test_status_reports_done_running_and_failed(fake, tmp_path):
    from wan_queue.status import status_report

    out = tmp_path / "out"
    _run(_workflow(tmp_path), out, [fake], "--seeds", "1-2")
    _run(_workflow(tmp_path, model="nope.safetensors"), out, [fake])
    fake.paused = True
    manifest = Manifest(out)
    manifest.append(
        {
            "job": "feedfeedfeedfeed",
            "status": "queued",
            "params": {},
            "server": f"http://{fake.address}",
            "prompt_id": "gone",
        }
    )
    text, code = status_report(out)
    assert code == 1 and "4 jobs: 2 completed, 1 queued or running, 1 failed" in text, text
    assert "prompt gone: lost" in text and "Value not in list" in text
    assert output_bytes(graph(seed=1)) in [(out / r["outputs"][0]["file"]).read_bytes() for r in _completed(out)]


def test_one_progress_bar_per_running_job_with_node_and_step(fake, tmp_path, capsys):
    """The fake sends /ws progress for node 2 (titled "Save"): the job's bar shows that node and its steps."""
    from wan_queue.client import ComfyServer
    from wan_queue.jobs import make_jobs
    from wan_queue.runner import BatchRunner, RunOptions
    from wan_queue.servers import ServerPool

    fake.run_s = 0.6
    (job,) = make_jobs(graph(), [{}])

    async def run():
        pool = ServerPool([ComfyServer(fake.address)], {"FakeLoader", "FakeSave"}, per_server=1, backoff_max_s=1)
        try:
            return await BatchRunner([job], pool, RunOptions(tmp_path, progress=True, poll_s=0.2)).run()
        finally:
            await pool.close()

    assert asyncio.run(run()).completed == 1
    err = capsys.readouterr().err
    assert f"{job.id[:8]} Save" in err and "2/2" in err, err
