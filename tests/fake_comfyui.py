"""A small stand-in for ComfyUI's HTTP API (aiohttp, on 127.0.0.1) for the queue tool's offline tests.

It speaks the parts wan_queue uses, with ComfyUI's shapes: ``/object_info``, ``/prompt`` (validation
answers 400 with ``node_errors``), ``/queue``, ``/history/{id}``, ``/view``, ``/upload/image``,
``/models``, ``/interrupt`` and ``/ws`` events. One prompt runs at a time for ``run_s`` seconds and writes
one output file whose bytes derive from the prompt. ``restart()`` loses queue and history (a killed and
restarted server); ``stop()``/``start()`` make it unreachable for a while. It runs on its own thread and
event loop, so the code under test can use ``asyncio.run`` in the test's thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from pathlib import Path

from aiohttp import web

OBJECT_INFO = {
    "FakeLoader": {
        "input": {"required": {"model_name": [["m.safetensors"], {}]}},
        "input_order": {"required": ["model_name"]},
        "output": ["MODEL"],
        "display_name": "Fake Loader",
    },
    "FakeImage": {
        "input": {"required": {"image": [["a.png"], {"image_upload": True}]}},
        "input_order": {"required": ["image"]},
        "output": ["IMAGE"],
        "display_name": "Fake Image",
    },
    "FakeSave": {
        "input": {
            "required": {
                "model": ["MODEL", {}],
                "seed": ["INT", {"min": 0}],
                "text": ["STRING", {}],
                "filename_prefix": ["STRING", {}],
            },
            "optional": {"image": ["IMAGE", {}]},
        },
        "input_order": {"required": ["model", "seed", "text", "filename_prefix"], "optional": ["image"]},
        "output": [],
        "output_node": True,
        "display_name": "Fake Save",
    },
}
MODELS = {"diffusion_models": ["m.safetensors"], "vae": ["v.safetensors"]}


def graph(seed: int = 1, text: str = "a fox", model: str = "m.safetensors", image: str | None = None) -> dict:
    """An API graph for the fake: loader -> save (one output file)."""
    api = {
        "1": {"class_type": "FakeLoader", "inputs": {"model_name": model}, "_meta": {"title": "Loader"}},
        "2": {
            "class_type": "FakeSave",
            "inputs": {"model": ["1", 0], "seed": seed, "text": text, "filename_prefix": "out"},
            "_meta": {"title": "Save"},
        },
    }
    if image is not None:
        api["3"] = {"class_type": "FakeImage", "inputs": {"image": image}, "_meta": {"title": "Image"}}
        api["2"]["inputs"]["image"] = ["3", 0]
    return api


def _json(answer):
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(answer(request))

    return handler


def output_bytes(prompt: dict) -> bytes:
    return json.dumps({k: v["inputs"] for k, v in sorted(prompt.items())}, sort_keys=True).encode()


class FakeComfyUI:
    def __init__(self, run_s: float = 0.05, port: int = 0):
        self.run_s, self.port = run_s, port
        self.pending: list[tuple[str, dict, str]] = []  # (prompt id, prompt, client id)
        self.running: tuple[str, dict, str] | None = None
        self.history: dict[str, dict] = {}
        self.files: dict[str, bytes] = {}
        self.uploads: dict[str, bytes] = {}
        self.posted: list[str] = []  # prompt ids accepted, over restarts
        self.executed: list[str] = []
        self.paused = False
        self.cancelled: list[str] = []  # prompt ids removed through POST /queue {"delete": [...]}
        self.resume_on_cancel = False  # unpause once a client cancels prompts
        self.on_done = None  # callback(fake, prompt_id) after a prompt finishes (runs on the server loop)
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self._worker: asyncio.Task | None = None
        self.start()

    # ------------------------------------------------------------------ control (from the test's thread)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def start(self) -> None:
        self._call(self._start())

    def stop(self) -> None:
        self._call(self._stop())

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, lose the queue and history (as a killed server does), start again on the same port."""
        self._call(self._restart(down_s))

    def close(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ server side

    async def _start(self) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/object_info", _json(lambda r: OBJECT_INFO)),
                web.get("/models", _json(lambda r: list(MODELS))),
                web.get("/models/{folder}", _json(lambda r: MODELS[r.match_info["folder"]])),
                web.post("/prompt", self._prompt),
                web.get("/queue", self._queue),
                web.post("/queue", self._queue_delete),
                web.post("/interrupt", _json(lambda r: {})),
                web.get("/history/{pid}", self._history),
                web.get("/view", self._view),
                web.post("/upload/image", self._upload),
                web.get("/ws", self._ws),
            ]
        )
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._worker = asyncio.ensure_future(self._work())

    async def _stop(self) -> None:
        if self._worker:
            self._worker.cancel()
        if self.running:  # unreachable, not restarted: it runs again when the server is back
            self.pending.insert(0, self.running)
            self.running = None
        for ws in list(self.sockets.values()):
            await ws.close()
        if self._runner:
            await self._runner.cleanup()
        self._runner = None

    async def _restart(self, down_s: float) -> None:
        await self._stop()
        self.pending, self.running, self.history = [], None, {}
        await asyncio.sleep(down_s)
        await self._start()

    def restart_soon(self, down_s: float = 0.3) -> None:
        """From a callback on the server loop: restart after this request finishes."""
        asyncio.get_running_loop().create_task(self._restart(down_s))

    async def _prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        prompt, pid = body["prompt"], body.get("prompt_id") or str(uuid.uuid4())
        for node in prompt.values():
            if node["class_type"] not in OBJECT_INFO:
                error = {
                    "type": "invalid_prompt",
                    "message": f"Cannot execute because node {node['class_type']} does not exist.",
                }
                return web.json_response({"error": error, "node_errors": {}}, status=400)
        errors = self._node_errors(prompt)
        if errors:
            error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"}
            return web.json_response({"error": error, "node_errors": errors}, status=400)
        self.pending.append((pid, prompt, body.get("client_id", "")))
        self.posted.append(pid)
        return web.json_response({"prompt_id": pid, "number": len(self.posted), "node_errors": {}})

    def _node_errors(self, prompt: dict) -> dict:
        out = {}
        for nid, node in prompt.items():
            if node["class_type"] == "FakeLoader" and node["inputs"]["model_name"] not in MODELS["diffusion_models"]:
                value = node["inputs"]["model_name"]
                err = {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": f"model_name: '{value}' not in ['m.safetensors']",
                    "extra_info": {"input_name": "model_name", "received_value": value},
                }
                out[nid] = {"errors": [err], "dependent_outputs": ["2"], "class_type": "FakeLoader"}
        return out

    async def _queue(self, request: web.Request) -> web.Response:
        running = [[0, self.running[0], self.running[1], {}, []]] if self.running else []
        pending = [[i + 1, p[0], p[1], {}, []] for i, p in enumerate(self.pending)]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    async def _queue_delete(self, request: web.Request) -> web.Response:
        drop = set((await request.json()).get("delete", []))
        self.cancelled += [p[0] for p in self.pending if p[0] in drop]
        self.pending = [p for p in self.pending if p[0] not in drop]
        self.paused = self.paused and not self.resume_on_cancel
        return web.Response()

    async def _history(self, request: web.Request) -> web.Response:
        pid = request.match_info["pid"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def _view(self, request: web.Request) -> web.Response:
        name = request.query["filename"]
        if name not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[name], content_type="video/mp4")

    async def _upload(self, request: web.Request) -> web.Response:
        post = await request.post()
        field = post["image"]
        self.uploads[field.filename] = field.file.read()
        return web.json_response({"name": field.filename, "subfolder": "", "type": "input"})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId", "")
        self.sockets[sid] = ws
        try:
            async for _message in ws:
                pass
        finally:
            self.sockets.pop(sid, None)
        return ws

    async def _send(self, client_id: str, kind: str, data: dict) -> None:
        ws = self.sockets.get(client_id)
        if ws is not None and not ws.closed:
            await ws.send_json({"type": kind, "data": data})

    async def _work(self) -> None:
        while True:
            if self.paused or not self.pending:
                await asyncio.sleep(0.01)
                continue
            self.running = self.pending.pop(0)
            pid, prompt, client = self.running
            await self._send(client, "execution_start", {"prompt_id": pid})
            for step in (1, 2):
                await asyncio.sleep(self.run_s / 2)
                await self._send(client, "progress", {"prompt_id": pid, "node": "2", "value": step, "max": 2})
            self._finish(pid, prompt)
            await self._send(client, "execution_success", {"prompt_id": pid})
            if self.on_done:
                self.on_done(self, pid)

    def _finish(self, pid: str, prompt: dict) -> None:
        data = output_bytes(prompt)
        name = f"out_{hashlib.sha256(data).hexdigest()[:8]}_{len(self.executed):05d}_.mp4"
        self.files[name] = data
        self.executed.append(pid)
        outputs = {"2": {"images": [{"filename": name, "subfolder": "", "type": "output"}], "animated": [True]}}
        status = {"status_str": "success", "completed": True, "messages": [["execution_success", {"prompt_id": pid}]]}
        self.history[pid] = {"prompt": [0, pid, prompt, {}, ["2"]], "outputs": outputs, "status": status}
        self.running = None


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
