"""``python -m wan_core``: generate videos, write tiny test models, run a self-test.

    python -m wan_core generate --model M --vae V --text-encoder T --prompt "..." --out out.mp4
    python -m wan_core make-tiny-models DIR
    python -m wan_core selftest [--out wan_selftest.mp4]

See docs/CLI.md for every option (defined in :mod:`wan_core.cli_args`; the checks before any model
loads are :mod:`wan_core.cli_preflight`). Exit codes: 0 ok, 1 a WanError (bad input or
model file; the message says what to do), 2 bad command-line syntax, 3 an unexpected
error (a bug: rerun with -v for the traceback), 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM). Every value is checked before any model loads; an interrupted or failed run
leaves nothing at --out.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import cli_longvideo
from .cli_args import build_parser, refuse_empty
from .cli_preflight import one_or_shards, preflight, selftest_preflight
from .errors import InputError, WanError, WanInterrupted, WanTerminated
from .parallel import options as parallel_options

log = logging.getLogger("wan_core.cli")

EXIT_ERROR, EXIT_BUG, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 3, 130, 143


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


class TerminalProgress:
    """RunHooks progress -> a tqdm bar on stderr, one per phase (sampling steps, then VAE chunks).

    A bar closes when it reaches its total; a step that goes backwards or a new total starts the next one.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, step: int, total: int, preview: Any = None) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None or self.bar.total != total or step < self.bar.n:
            self.close()
            self.bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True, leave=True)
        self.bar.update(step - self.bar.n)
        if step >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _run_hooks(args: argparse.Namespace) -> tuple[Any, TerminalProgress]:
    from .progress import RunHooks

    progress = TerminalProgress(enabled=not args.quiet)
    return RunHooks(progress=progress), progress


@contextlib.contextmanager
def _bars_and_logs() -> Iterator[None]:
    """Log lines printed above the progress bar instead of through it."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield


def _emit(text: str) -> None:
    """The one machine-readable result line, on stdout (logging goes to stderr)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def cmd_generate(args: argparse.Namespace, leader: Any = None) -> int:
    """``leader``: set on rank 0 of a torchrun launch (see wan_core.parallel.cli)."""
    import time

    from .pipeline import WanPipeline

    if leader is None and parallel_options.launched_by_torchrun():
        from .parallel import cli as parallel_cli

        return parallel_cli.run(args, cmd_generate)

    started = time.perf_counter()
    request, inputs, loras, out = preflight(args)
    pipe = WanPipeline.from_files(
        model=one_or_shards(args.model),
        model_low=one_or_shards(args.model_low),
        vae=args.vae,
        text_encoder=args.text_encoder,
        clip_vision=args.clip_vision,
        tokenizer=args.tokenizer,
        device=args.device,
        dtype=args.dtype,
        offload=args.offload,
        attention=args.attention,
        fast_8bit=args.fast_8bit,
    )
    pipe.add_loras(loras)
    if leader is not None:
        from .parallel.cli import distribute

        distribute(pipe, leader, args, loras)
    hooks, progress = _run_hooks(args)
    try:
        if args.extend:
            result = cli_longvideo.extend(args, pipe, request, hooks)
        else:
            camera = cli_longvideo.camera_trajectory(args, cli_longvideo.run_frames(args, pipe))
            result = pipe.run(request, dataclasses.replace(inputs, camera=camera), hooks)
    finally:
        progress.close()
    path = result.save(out)
    elapsed = time.perf_counter() - started
    log.info(
        "seed %s, %d frames %dx%d, %.1f s in total",
        result.params["seed"],
        result.frames.shape[0],
        result.frames.shape[2],
        result.frames.shape[1],
        elapsed,
    )
    _emit(f"{path}")
    return 0


def _write_tiny(directory: str, seed: int, names: tuple[str, ...] | None, overwrite: bool = True) -> dict:
    """write_tiny_models with typed errors (an unknown name, a folder that cannot be written)."""
    from .errors import OutputError
    from .tiny_build import write_tiny_models
    from .validation import CLI_NAMES, check_folder, check_number

    check_folder(directory, "directory" if overwrite else "models_dir", CLI_NAMES)
    check_number(seed, "seed", CLI_NAMES)
    try:
        return write_tiny_models(directory, seed=seed, names=names, overwrite=overwrite)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None
    except OSError as exc:
        raise OutputError(
            f"Could not write the tiny models under {directory!r} ({exc}); choose another folder."
        ) from None


def cmd_make_tiny_models(args: argparse.Namespace) -> int:
    written = _write_tiny(args.directory, args.seed, tuple(args.only) if args.only else None)
    for path in written.values():
        _emit(str(path))
    log.info("wrote %d tiny model files under %s", len(written), args.directory)
    return 0


SELFTEST_FILES = (
    "wan2.1_t2v_1.3B_bf16.safetensors",
    "wan_2.1_vae.safetensors",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
)


def run_selftest(
    out: str | Path,
    models_dir: str | Path,
    frames: int,
    size: tuple[int, int],
    steps: int,
    seed: int = 0,
    device: str = "cpu",
    hooks: Any = None,
) -> dict[str, Any]:
    """Write tiny T2V models to ``models_dir``, generate ``frames`` frames, save and verify ``out``.

    Returns a summary {path, frames, size, codec, pix_fmt, seconds}; raises WanError on failure.
    """
    import time

    import av

    from .pipeline import WanPipeline

    started = time.perf_counter()
    paths = _write_tiny(str(models_dir), 0, SELFTEST_FILES, overwrite=False)
    pipe = WanPipeline.from_files(
        model=paths[SELFTEST_FILES[0]],
        vae=paths[SELFTEST_FILES[1]],
        text_encoder=paths[SELFTEST_FILES[2]],
        device=device,
        dtype="fp32",
        text_cache=False,
    )  # random weights: nothing worth caching on disk
    result = pipe.generate(
        "a tiny red fox runs through fresh snow, cinematic",
        frames=frames,
        width=size[0],
        height=size[1],
        steps=steps,
        cfg=5.0,
        shift=5.0,
        seed=seed,
        hooks=hooks,
    )
    path = result.save(out)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec, pix_fmt = stream.codec_context.name, stream.codec_context.pix_fmt
        decoded = sum(1 for _ in container.decode(stream))
    if decoded != frames:
        raise WanError(f"selftest wrote {decoded} frames to {path} but {frames} were requested.")
    return {
        "path": str(path),
        "frames": decoded,
        "size": f"{size[0]}x{size[1]}",
        "codec": codec,
        "pix_fmt": pix_fmt,
        "seconds": round(time.perf_counter() - started, 2),
        "phases": ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in result.timings.items()),
    }


def cmd_selftest(args: argparse.Namespace) -> int:
    import tempfile

    selftest_preflight(args)
    hooks, progress = _run_hooks(args)
    try:
        if args.models_dir:
            summary = run_selftest(
                args.out, args.models_dir, args.frames, args.size, args.steps, args.seed, args.device, hooks
            )
        else:
            with tempfile.TemporaryDirectory(prefix="wan_selftest_") as tmp:
                summary = run_selftest(args.out, tmp, args.frames, args.size, args.steps, args.seed, args.device, hooks)
    finally:
        progress.close()
    log.info(
        "selftest OK: %s (%d frames, %s, %s %s) in %.1f s (%s)",
        summary["path"],
        summary["frames"],
        summary["size"],
        summary["codec"],
        summary["pix_fmt"],
        summary["seconds"],
        summary["phases"],
    )
    _emit(summary["path"])
    return 0


COMMANDS = {"generate": cmd_generate, "make-tiny-models": cmd_make_tiny_models, "selftest": cmd_selftest}


# API parameter names that deep errors may mention -> the flags a CLI user typed (not inside paths or
# file names: clip_vision_h.safetensors and models/clip_vision/ stay as they are).
_API_NAMES = re.compile(
    r"(?<![\w/\\.-])(clip_vision|model_low|last_image|control_video|control_mask|reference_images|"
    r"vace_strength|negative_prompt|text_encoder)(?![\w/\\.-])"
)
_FLAGS = {"reference_images": "--reference-image"}


def cli_message(text: str) -> str:
    """A WanError message with API parameter names replaced by the CLI's flags."""
    text = text.replace("tokenizer=", "--tokenizer ")
    return _API_NAMES.sub(lambda m: _FLAGS.get(m.group(1), "--" + m.group(1).replace("_", "-")), text)


@contextlib.contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """SIGTERM raises WanTerminated (like Ctrl-C raises KeyboardInterrupt), so cleanup code runs: the
    sampler frees memory and a half-written output file is removed. Main thread only."""

    def terminated(signum: int, frame: Any) -> None:
        raise WanTerminated("Terminated (SIGTERM); partial results were discarded.")

    try:
        previous = signal.signal(signal.SIGTERM, terminated)
    except ValueError:  # not the main thread: leave signals to the host program
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    refuse_empty(parser, args)
    _setup_logging(args)
    try:
        with _sigterm_as_exception(), _bars_and_logs():
            return COMMANDS[args.command](args)
    except WanTerminated:
        log.error("Terminated; nothing was written.")
        return EXIT_TERMINATED
    except (WanInterrupted, KeyboardInterrupt):
        log.error("Interrupted; nothing was written.")
        return EXIT_INTERRUPTED
    except WanError as exc:
        log.error("%s: %s", type(exc).__name__, cli_message(str(exc)))
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a message, never a raw traceback
        if _out_of_memory(exc):
            log.error("Out of memory (%s): lower --size or --frames, use --offload, or a smaller --dtype.", exc)
            return EXIT_ERROR
        log.error(
            "Unexpected %s: %s. This is a bug in wan_core: rerun with -v for the traceback and report it.",
            type(exc).__name__,
            exc,
        )
        log.debug("Traceback of the unexpected error:", exc_info=True)
        return EXIT_BUG
