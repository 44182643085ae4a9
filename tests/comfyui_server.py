"""A real ComfyUI server process for tests: found through ``COMFYUI_PATH`` (skipped with the reason when
unset), run on CPU with this pack linked into ``custom_nodes`` as the only custom node, its models from
an ``extra_model_paths.yaml``, and user data, temp files and database outside the checkout.

ComfyUI runs with ``$COMFYUI_PYTHON`` (default: the Python running pytest), which needs ComfyUI's
requirements and this pack's requirements.txt.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

from wan_core.parallel.local import free_port

START_TIMEOUT_S = 300
LINK_NAME = "comfyui-wan-core-under-test"
SKIP_HELP = (
    "set COMFYUI_PATH to a ComfyUI checkout (0.3.64+) and COMFYUI_PYTHON to a Python that has ComfyUI's "
    "requirements and this pack's requirements.txt (default: the Python running pytest)"
)
MODEL_FOLDERS = ("diffusion_models", "vae", "text_encoders", "clip_vision", "loras")


def skip(reason: str) -> None:
    print(f"SKIP real-ComfyUI test: {reason}")
    pytest.skip(reason)


def comfyui_path() -> Path:
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        skip(f"COMFYUI_PATH is not set: {SKIP_HELP}")
    root = Path(path)
    if not (root / "main.py").is_file():
        skip(f"COMFYUI_PATH={path} has no main.py: {SKIP_HELP}")
    return root


def comfyui_python() -> str:
    """The interpreter that runs ComfyUI: $COMFYUI_PYTHON, else the one running the tests."""
    python = os.environ.get("COMFYUI_PYTHON") or sys.executable
    if not Path(python).is_file():
        raise AssertionError(f"COMFYUI_PYTHON={python} does not exist: {SKIP_HELP}")
    return python


def get_json(url: str, timeout: float = 30):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def write_extra_model_paths(path: Path, models: Path) -> None:
    lines = ["wan_core_tiny:", f"    base_path: {models}"] + [f"    {f}: {f}" for f in MODEL_FOLDERS]
    path.write_text("\n".join(lines) + "\n")


def tiny_model_folder(work: Path) -> Path:
    """Tiny models under ``work/models`` and the extra_model_paths.yaml that points ComfyUI at them (returned)."""
    from wan_core.tiny_build import write_tiny_models

    write_tiny_models(work / "models")
    yaml = work / "extra_model_paths.yaml"
    write_extra_model_paths(yaml, work / "models")
    return yaml


@contextlib.contextmanager
def pack_linked(root: Path) -> Iterator[None]:
    """This checkout linked into ``root/custom_nodes`` under LINK_NAME while the block runs."""
    link = root / "custom_nodes" / LINK_NAME
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    try:
        yield
    finally:
        if link.is_symlink():
            link.unlink()


class ComfyUIProcess:
    """``main.py --cpu`` on 127.0.0.1:``port`` with its own input, output, user and temp folders under
    ``work``; start/stop/kill and start again on the same port (a server restart)."""

    def __init__(
        self,
        root: Path,
        work: Path,
        extra_model_paths: Path,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
    ):
        self.root, self.work, self.extra_model_paths = root, work, extra_model_paths
        self.extra_args = extra_args
        self.port = port or free_port()
        self.inputs, self.outputs = work / "input", work / "output"
        self.log_path = work / "comfyui.log"
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        # only this pack among the custom nodes; user data, temp files and the database outside the checkout
        return [
            comfyui_python(),
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--extra-model-paths-config",
            str(self.extra_model_paths),
            "--input-directory",
            str(self.inputs),
            "--output-directory",
            str(self.outputs),
            "--user-directory",
            str(self.work / "user"),
            "--temp-directory",
            str(self.work / "temp"),
            "--database-url",  # a file: an in-memory SQLite connection breaks when ComfyUI's threads share it
            f"sqlite:///{self.work / 'comfyui.db'}",
            "--disable-all-custom-nodes",
            "--whitelist-custom-nodes",
            LINK_NAME,
            *self.extra_args,
        ]

    def start(self, wait: bool = True) -> None:
        for folder in (self.inputs, self.outputs, self.work / "user"):
            folder.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(self.command(), cwd=self.root, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_until_up()

    def wait_until_up(self) -> None:
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"ComfyUI exited with {self.process.returncode} (is COMFYUI_PYTHON right? {SKIP_HELP}):\n"
                    f"{self.log_path.read_text()[-4000:]}"
                )
            try:
                get_json(f"{self.base}/system_stats", timeout=5)
                return
            except OSError:
                time.sleep(1)
        raise AssertionError(f"ComfyUI did not start within {START_TIMEOUT_S}s:\n{self.log_path.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, the queue and history are lost (as in a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
