"""A minimal WebSocket client for ComfyUI's ``/ws`` (the editor's live channel), standard library only.

Enough for tests: connect with a client id, announce the editor's feature flags (so live previews
come with metadata, as 0.3.64 sends them only then), then read text (JSON) and binary frames.
Binary frames are ``[event u32][payload]``; event 4 = preview with metadata: ``[len u32][json][image]``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4


class ComfyWebSocket:
    def __init__(self, host: str, port: int, client_id: str, timeout: float = 60.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError(f"/ws closed during the handshake: {head!r}")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"/ws refused the upgrade: {head!r}")
        self.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})

    def send_json(self, message: dict) -> None:
        """One masked text frame (clients must mask)."""
        payload, mask = json.dumps(message).encode(), os.urandom(4)
        header = bytes([0x81]) + (
            bytes([0x80 | len(payload)])
            if len(payload) < 126
            else bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        )
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("/ws closed")
            data += chunk
        return data

    def receive(self) -> dict | bytes:
        """The next message: a dict for text frames, bytes for binary ones (control frames skipped)."""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(length)  # server frames are not masked
            opcode = first & 0x0F
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x2:
                return payload
            if opcode == 0x8:
                raise ConnectionError("/ws closed by the server")

    def close(self) -> None:
        self.sock.close()


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
