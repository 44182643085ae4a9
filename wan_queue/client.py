"""One ComfyUI server over HTTP (httpx) and its ``/ws`` event channel (websockets).

Every transport failure (refused, reset, timeout, 5xx) becomes :class:`ServerDown`, so callers handle a
dead, restarting or unreachable server in one place.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from .errors import PromptRejected, ServerDown, ServerError
from .jobs import LocalFile
from .manifest import atomic_write

DEFAULT_SERVER = "127.0.0.1:8188"


def server_url(address: str) -> str:
    """``HOST:PORT``, ``HOST`` or a full ``http(s)://`` URL -> ``http://HOST:PORT`` (no trailing slash)."""
    address = address.strip().rstrip("/")
    if "://" not in address:
        address = f"http://{address}"
    host = address.split("://", 1)[1]
    return address if ":" in host else f"{address}:8188"


class ComfyServer:
    def __init__(self, address: str, timeout_s: float = 60.0):
        self.url = server_url(address)
        self.client_id = uuid.uuid4().hex  # events of the prompts we queue are sent to this id
        self._http = httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(timeout_s, connect=5.0))
        self._model_folders: dict[str, list[str]] | None = None

    def __repr__(self) -> str:
        return f"ComfyServer({self.url})"

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerDown(f"{self.url} did not answer {method} {path}: {exc!r}") from exc
        if response.status_code >= 500:
            raise ServerDown(f"{self.url} answered {method} {path} with HTTP {response.status_code}")
        return response

    def _check(self, response: httpx.Response) -> None:
        if response.is_error:
            request = response.request
            raise ServerError(
                f"{self.url} answered {request.method} {request.url.path} with HTTP {response.status_code}: "
                f"{response.text[:300]}"
            )

    async def get_json(self, path: str, params: dict | None = None) -> Any:
        response = await self._request("GET", path, params=params)
        self._check(response)
        return response.json()

    async def object_info(self) -> dict:
        return await self.get_json("/object_info")

    async def queue(self) -> tuple[list[str], list[str]]:
        """Prompt ids (running, pending) in the server's queue, whoever queued them."""
        data = await self.get_json("/queue")
        return [item[1] for item in data.get("queue_running", [])], [item[1] for item in data.get("queue_pending", [])]

    async def history(self, prompt_id: str) -> dict | None:
        return (await self.get_json(f"/history/{prompt_id}")).get(prompt_id)

    async def prompt_state(
        self, prompt_id: str, queue: tuple[list[str], list[str]] | None = None
    ) -> tuple[str, dict | None]:
        """("running" | "pending" | "done" | "unknown", history entry). Queue first (``queue``: an answer
        of :meth:`queue` already fetched), then history: a prompt that leaves the queue is in the history by then."""
        running, pending = queue if queue is not None else await self.queue()
        if prompt_id in running or prompt_id in pending:
            return ("running" if prompt_id in running else "pending"), None
        entry = await self.history(prompt_id)
        return ("done", entry) if entry else ("unknown", None)

    async def submit(self, prompt: dict, prompt_id: str, extra_data: dict | None = None) -> dict:
        payload = {"prompt": prompt, "prompt_id": prompt_id, "client_id": self.client_id}
        if extra_data:
            payload["extra_data"] = extra_data
        response = await self._request("POST", "/prompt", json=payload)
        if response.status_code == 400:
            try:
                body = response.json()
            except json.JSONDecodeError:
                body = {"error": {"message": response.text}}
            raise PromptRejected(f"{self.url} rejected the prompt", body)
        self._check(response)
        return response.json()

    async def upload(self, local: LocalFile) -> str:
        """Upload to the input folder (``/upload/image`` takes any file); returns the name to use."""
        with open(local.path, "rb") as handle:
            files = {"image": (local.upload_name, handle, "application/octet-stream")}
            response = await self._request("POST", "/upload/image", files=files, data={"overwrite": "true"})
        self._check(response)
        answer = response.json()
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    async def download(self, ref: dict, dest: Path) -> tuple[str, int]:
        """One output file (``{filename, subfolder, type}``) through ``/view`` into ``dest``, atomically;
        returns (sha256, bytes)."""
        params = {"filename": ref["filename"], "subfolder": ref.get("subfolder", ""), "type": ref.get("type", "output")}
        digest, size = hashlib.sha256(), 0
        try:
            async with self._http.stream("GET", "/view", params=params) as response:
                if response.is_error:
                    await response.aread()
                    self._check(response)
                with atomic_write(dest) as handle:
                    async for chunk in response.aiter_bytes():
                        digest.update(chunk)
                        handle.write(chunk)
                        size += len(chunk)
        except httpx.TransportError as exc:
            raise ServerDown(f"{self.url}: download of {ref['filename']} failed: {exc!r}") from exc
        return digest.hexdigest(), size

    async def model_folders(self) -> dict[str, list[str]]:
        """{model folder: file names} as the server sees them (``/models``); asked once per run."""
        if self._model_folders is None:
            folders = await self.get_json("/models")
            self._model_folders = {folder: await self.get_json(f"/models/{folder}") for folder in folders}
        return self._model_folders

    async def cancel(self, prompt_ids: list[str]) -> None:
        """Remove pending prompts and interrupt running ones (prompts we gave up on and queued elsewhere).

        Only prompts the queue lists are touched (an old server's /interrupt ignores the prompt id)."""
        running, pending = await self.queue()
        if drop := [p for p in prompt_ids if p in pending]:
            await self._request("POST", "/queue", json={"delete": drop})
        for prompt_id in (p for p in prompt_ids if p in running):
            await self._request("POST", "/interrupt", json={"prompt_id": prompt_id})

    async def events(self) -> AsyncIterator[dict]:
        """JSON messages from ``/ws`` (binary previews skipped); ServerDown when the connection ends."""
        url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        try:
            async with connect(url, max_size=None, open_timeout=10) as ws:
                async for message in ws:
                    if isinstance(message, str):
                        yield json.loads(message)
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise ServerDown(f"{self.url}/ws: {exc!r}") from exc
        raise ServerDown(f"{self.url}/ws closed")
