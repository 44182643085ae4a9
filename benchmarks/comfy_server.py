"""A real ComfyUI server for the benchmarks that measure the pack where users run it (one place for both).

Starts ComfyUI's ``main.py`` from a checkout beside the project (never part of it) on a free local port,
with its models, outputs, user and temp folders and its database under one work folder, and only the named
custom node packs; talks to it over plain HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wan_core.parallel.local import free_port  # the callers put the repository on sys.path

MODEL_FOLDERS = ("diffusion_models", "text_encoders", "vae")


def http(url: str, payload: dict | None = None, timeout: float = 60) -> dict:
    """GET (or POST ``payload`` as JSON) and parse the JSON answer; an HTTP error ends the benchmark with its body."""
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            return json.loads(body) if body else {}
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{url}: HTTP {exc.code}: {exc.read().decode(errors='replace')[:2000]}") from exc


SAMPLER_LINE = re.compile(r"Wan Sampler: \d+ steps in ([\d.]+) s \(per step: ([\d., ]+) s\)")


def sampler_runs(log: str) -> list[tuple[float, list[float]]]:
    """Each Wan Sampler run in a server log: (seconds, per-step seconds), from its summary line."""
    return [(float(total), [float(t) for t in steps.split(",")]) for total, steps in SAMPLER_LINE.findall(log)]


@contextlib.contextmanager
def packs_linked(comfyui: Path, packs: dict[str, Path]) -> Iterator[None]:
    """``packs`` ({name: folder}) linked into ComfyUI's custom_nodes while the block runs (links made here are removed)."""
    made = []
    for name, target in packs.items():
        link = comfyui / "custom_nodes" / name
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
            made.append(link)
    try:
        yield
    finally:
        for link in made:
            if link.is_symlink():
                link.unlink()


def save_tensors(path: Path, tensors: dict) -> None:
    """A safetensors model file (its folder made when missing)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def umt5_tensors(width: int | None) -> dict:
    """The tiny umT5 (``width`` None, for smoke runs), or one layer as wide as a DiT's text input."""
    from wan_core.text.tiny import tiny_t5_state_dict
    from wan_core.tiny_models import TinySizes

    if width is None:
        return tiny_t5_state_dict(seed=2)
    return tiny_t5_state_dict(
        seed=2, sizes=TinySizes(text_dim=width, t5_layers=1, t5_heads=64, t5_d_kv=64, t5_d_ff=1024)
    )


def prepare_work(work: Path) -> None:
    """ComfyUI's folders under ``work``: models (via an extra model paths file), out, user, temp."""
    lines = ["wan_core_bench:", f"    base_path: {work / 'models'}"] + [f"    {f}: {f}" for f in MODEL_FOLDERS]
    (work / "extra_model_paths.yaml").write_text("\n".join(lines) + "\n")
    for folder in ("user", "temp", "out"):
        (work / folder).mkdir(parents=True, exist_ok=True)


@dataclass
class ComfyServer:
    """One ComfyUI process; ``extra_args`` and ``env`` add to the common command line and environment."""

    comfyui: Path
    python: str
    work: Path
    packs: tuple[str, ...]
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        w = self.work
        cmd = [self.python, "main.py", "--listen", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--extra-model-paths-config", str(w / "extra_model_paths.yaml"), "--output-directory", str(w / "out")]
        cmd += ["--user-directory", str(w / "user"), "--temp-directory", str(w / "temp")]
        # a file database: an in-memory SQLite connection breaks (logged tracebacks) when ComfyUI's threads share it
        cmd += ["--database-url", f"sqlite:///{w / 'comfyui.db'}", "--disable-all-custom-nodes"]
        return cmd + ["--whitelist-custom-nodes", *self.packs, *self.extra_args]

    def start(self, timeout_s: float = 300) -> None:
        """Start the process and wait until it answers; its log goes to ``log_path``."""
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.comfyui, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"ComfyUI exited ({self.process.returncode}):\n{self.log_text()[-4000:]}")
            try:
                http(f"{self.base}/system_stats", timeout=5)
                return
            except OSError:
                time.sleep(1)
        raise SystemExit(f"ComfyUI did not start:\n{self.log_text()[-4000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout_s: float) -> bool:
        """Whether ``text`` appears in the server's log within ``timeout_s`` (lines may trail the HTTP answers)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if text in self.log_text():
                return True
            time.sleep(0.5)
        return False

    def queue(self, graph: dict) -> str:
        """POST an API-format graph to /prompt; its prompt id."""
        return http(f"{self.base}/prompt", {"prompt": graph})["prompt_id"]

    def free(self, timeout_s: float = 120.0) -> None:
        """POST /free (unload models, reset caches) and wait until the server has acted on it.

        ComfyUI only reads the flags after its prompt loop wakes, possibly after running a prompt
        queued meanwhile: queueing the next prompt straight away would let the unload land
        mid-measurement. Done = no DiT of ours left in ComfyUI's manager (``/wan_core/memory``; a text
        encoder on the CPU stays listed: ComfyUI unloads only its compute device).
        """
        http(f"{self.base}/free", {"unload_models": True, "free_memory": True})
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            models = http(f"{self.base}/wan_core/memory")["loaded_models"]
            if not any(m["ours"] and m["name"] == "WanDiT" for m in models):
                return
            time.sleep(0.5)
        raise SystemExit(f"ComfyUI did not unload the models within {timeout_s:.0f} s of /free")

    def wait(self, prompt_id: str, timeout_s: float) -> tuple[dict | None, str]:
        """(history entry, "") once the prompt succeeded, else (entry or None, why it did not)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            entry = http(f"{self.base}/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                messages = dict((kind, data) for kind, data in entry["status"].get("messages", []))
                if "execution_success" in messages:
                    return entry, ""
                error = messages.get("execution_error", {})
                return entry, f"{error.get('exception_type', '')}: {error.get('exception_message', messages)}"
            if self.process is not None and self.process.poll() is not None:
                return None, f"the server exited ({self.process.returncode})"
            time.sleep(0.5)
        return None, f"did not finish within {timeout_s:.0f} s"


def wan_t2v_graph(
    files: dict[str, str], size: tuple[int, int, int], steps: int, tag: str, seed: int = 7, gpus: str = ""
) -> dict:
    """Our T2V graph in API format, latent saved with SaveLatent (node "7") under ``bench/{tag}``.

    ``files``: model, low_noise_model ("none" for one DiT), text_encoder, vae; ``size``: width, height, frames.
    UniPC, CFG 5 (batched), shift 5, block_swap 0 (ComfyUI's manager sizes it), ``gpus`` for the Model Loader.
    """
    width, height, frames = size
    loader = {"model_name": files["model"], "low_noise_model_name": files["low_noise_model"]}
    loader |= {"weight_dtype": "auto", "attention": "auto", "block_swap": 0, "gpus": gpus}
    sampler = {"seed": seed, "steps": steps, "cfg": 5.0, "cfg_low_noise": -1.0, "shift": 5.0, "solver": "unipc"}
    sampler |= {"denoise": 1.0, "moe_boundary": 0.0, "batch_size": 1}
    te = {"text_encoder_name": files["text_encoder"], "device": "auto", "dtype": "auto", "keep_loaded": True}
    nodes = {
        "1": ("WanCoreModelLoader", loader),
        "2": ("WanCoreTextEncoderLoader", te),
        "3": ("WanCoreTextEncode", {"text_encoder": ["2", 0], "positive": "a lighthouse at dusk", "negative": ""}),
        "4": ("WanCoreVAELoader", {"vae_name": files["vae"], "dtype": "auto"}),
        "5": ("WanCoreEmptyVideoLatent", {"vae": ["4", 0], "width": width, "height": height, "length": frames}),
        "6": ("WanCoreSampler", {"model": ["1", 0], "text_embeds": ["3", 0], "conditioning": ["5", 0], **sampler}),
        "7": ("SaveLatent", {"samples": ["6", 0], "filename_prefix": f"bench/{tag}"}),
    }
    return {key: {"class_type": cls, "inputs": inputs} for key, (cls, inputs) in nodes.items()}
