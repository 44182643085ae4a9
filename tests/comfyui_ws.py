"""A blocking client for ComfyUI's ``/ws`` (the editor's live channel), on the websockets library.

Connect with a client id, announce the editor's feature flags (so live previews come with metadata, as
0.3.64 sends them only then), then read text (JSON) and binary frames. Binary frames are
``[event u32][payload]``; event 4 = preview with metadata: ``[len u32][json][image]``.
"""

from __future__ import annotations

import contextlib
import json
import struct

from websockets.sync.client import connect

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4


class ComfyWebSocket:
    def __init__(self, host: str, port: int, client_id: str, timeout: float = 60.0):
        self.timeout = timeout
        self._stack = contextlib.ExitStack()
        url = f"ws://{host}:{port}/ws?clientId={client_id}"
        self.ws = self._stack.enter_context(connect(url, open_timeout=timeout, max_size=None))
        self.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})

    def send_json(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def receive(self) -> dict | bytes:
        """The next message: a dict for text frames, bytes for binary ones; TimeoutError after ``timeout``."""
        message = self.ws.recv(timeout=self.timeout)
        return json.loads(message) if isinstance(message, str) else message

    def close(self) -> None:
        self._stack.close()


def preview_image(frame: bytes):
    """(metadata dict, PIL image) of a binary preview frame; None for other binary events."""
    from io import BytesIO

    from PIL import Image

    event = struct.unpack(">I", frame[:4])[0]
    if event == PREVIEW_IMAGE_WITH_METADATA:
        size = struct.unpack(">I", frame[4:8])[0]
        return json.loads(frame[8 : 8 + size]), Image.open(BytesIO(frame[8 + size :]))
    if event == PREVIEW_IMAGE:
        return {}, Image.open(BytesIO(frame[8:]))
    return None
