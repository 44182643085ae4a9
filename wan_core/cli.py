"""``python -m wan_core``: generate videos, write tiny test models, run a self-test.

    python -m wan_core generate --model M --vae V --text-encoder T --prompt "..." --out out.mp4
    python -m wan_core make-tiny-models DIR
    python -m wan_core selftest [--out wan_selftest.mp4]

See docs/CLI.md for every option. Exit codes: 0 ok, 1 a WanError (bad input or
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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import cli_longvideo
from .errors import InputError, WanError, WanInterrupted, WanTerminated
from .parallel import options as parallel_options

log = logging.getLogger("wan_core.cli")

EXIT_ERROR, EXIT_BUG, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 3, 130, 143


def parse_size(text: str) -> tuple[int, int]:
    """'832x480' (or '832*480') -> (width, height) in pixels (ranges are checked by the validation pass)."""
    parts = str(text).lower().replace("*", "x").replace("×", "x").split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"--size must look like 832x480 (width x height, whole pixels); got {text!r}.") from None
    return width, height


def parse_frames(text: str) -> int:
    """'81' -> 81 (4n+1 and the range are checked by the validation pass)."""
    try:
        return int(str(text).strip())
    except ValueError:
        raise InputError(f"--frames must be a whole number of frames (4n+1, e.g. 81); got {text!r}.") from None


def _number(flag: str, kind: type, example: str) -> Callable[[str], Any]:
    """An argparse type: int/float with our message (ranges and finiteness come later, with the rest)."""

    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise InputError(f"{flag} must be {what} (e.g. {example}); got {text!r}.") from None

    parse.__name__ = flag
    return parse


def _argtype(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse shows only ArgumentTypeError messages (it hides a ValueError's): re-raise ours as one."""

    def typed(text: str) -> Any:
        try:
            return parse(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    typed.__name__ = getattr(parse, "__name__", "value")
    return typed


def parse_cfg(text: str | None) -> float | tuple[float, float] | None:
    """'5' -> 5.0; '3,4' -> (3.0, 4.0) = (low-noise, high-noise) expert scales (the official A14B order)."""
    if text is None:
        return None
    try:
        values = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise InputError(f"--cfg must be a number or 'low,high' (e.g. 3,4); got {text!r}.") from None
    if len(values) not in (1, 2):
        raise InputError(f"--cfg takes one or two numbers; got {text!r}.")
    return values[0] if len(values) == 1 else (values[0], values[1])


def parse_lora(text: str) -> Any:
    """'file.safetensors:0.8' or 'file:0.8:0.5' (strength, low-noise expert strength) -> LoraSpec."""
    from .lora import LoraSpec
    from .validation import CLI_NAMES, check_input_file, check_number

    strengths: list[float] = []
    path = str(text)
    while ":" in path:
        head, tail = path.rsplit(":", 1)
        try:
            value = float(tail)
        except ValueError:
            break  # a drive letter or a colon in the file name
        strengths.insert(0, value)
        path = head
    if len(strengths) > 2:
        raise InputError(f"--lora takes PATH[:STRENGTH[:STRENGTH_LOW]]; got {text!r}.")
    strengths = [float(check_number(v, "lora_strength", CLI_NAMES)) for v in strengths]
    check_input_file(path, "lora", CLI_NAMES)
    strength = strengths[0] if strengths else 1.0
    low = strengths[1] if len(strengths) > 1 else None
    return LoraSpec(path=path, strength=strength, strength_low=low)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model files")
    group.add_argument("--model", required=True, nargs="+", help="DiT file (or shards); the high-noise expert for A14B")
    group.add_argument("--model-low", nargs="+", help="Wan2.2 A14B low-noise expert file (or shards)")
    group.add_argument("--vae", required=True, help="wan_2.1_vae / wan2.2_vae file")
    group.add_argument("--text-encoder", required=True, help="umT5-XXL file")
    group.add_argument("--tokenizer", help="tokenizer file/folder when the text encoder has none embedded")
    group.add_argument("--clip-vision", help="CLIP-H file (Wan2.1 I2V / FLF2V / Fun)")
    group.add_argument(
        "--lora", action="append", default=[], metavar="PATH[:STRENGTH[:LOW]]", help="apply a LoRA (repeatable)"
    )


def _sampling_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what to generate (unset = official default for the model's task)")
    group.add_argument("--prompt", required=True)
    group.add_argument("--negative-prompt", help="empty = the official default negative prompt")
    group.add_argument("--frames", type=_argtype(parse_frames), help="pixel frames, 4n+1")
    group.add_argument("--size", type=_argtype(parse_size), help="WIDTHxHEIGHT, e.g. 832x480")
    group.add_argument("--steps", type=_argtype(_number("--steps", int, "40")))
    group.add_argument(
        "--cfg", type=str, help="guidance scale, or LOW,HIGH: the low- and high-noise A14B experts' scales"
    )
    group.add_argument("--shift", type=_argtype(_number("--shift", float, "5")))
    group.add_argument("--solver", help="unipc, dpm++, euler")
    group.add_argument(
        "--seed", type=_argtype(_number("--seed", int, "42")), help="unset = random (stored in the file)"
    )
    group.add_argument("--fps", type=_argtype(_number("--fps", float, "16")))
    group.add_argument("--image", help="start image (I2V, FLF2V, TI2V, Fun)")
    group.add_argument("--last-image", help="end image (FLF2V)")
    group.add_argument("--control-video", help="VACE / Fun-Control control video")
    group.add_argument("--control-mask", help="VACE mask video (white = generate)")
    group.add_argument("--reference-image", action="append", default=[], help="VACE reference image (repeatable)")
    group.add_argument(
        "--vace-strength", type=_argtype(_number("--vace-strength", float, "1")), help="VACE models only (default 1)"
    )


def _speed_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fewer DiT calls (see docs/CLI.md)")
    group.add_argument(
        "--cache",
        metavar="METHOD[:THRESHOLD][,KEY=VALUE...]",
        help="step cache: easycache, magcache or teacache, e.g. easycache:0.2, magcache:0.12,k=2, "
        "magcache:calibrate=my_model.json, magcache:curve=my_model.json",
    )
    group.add_argument("--cfg-zero-star", action="store_true", help="CFG-Zero*: optimised scale of the negative")
    group.add_argument("--zero-init-steps", type=int, default=0, help="CFG-Zero*: zero velocity for the first N steps")
    group.add_argument("--cfg-range", metavar="START,END", help="guidance only for steps with k/steps in [START, END)")
    group.add_argument("--sigmas", help="custom sigma list, e.g. '1,0.9375,0.833333,0.625,0' (replaces steps, shift)")


def _speed_options(args: argparse.Namespace) -> dict[str, Any]:
    """GenerateParams fields from the speed arguments (the settings objects come from wan_core.sampling)."""
    from .sampling.cache import parse_cache_spec
    from .sampling.guidance import GuidanceOptions
    from .sampling.schedules import parse_sigmas

    start, end = 0.0, 1.0
    if args.cfg_range:
        try:
            start, end = (float(p) for p in args.cfg_range.split(","))
        except ValueError:
            raise InputError(f"--cfg-range must be START,END (e.g. 0,0.5); got {args.cfg_range!r}.") from None
    guidance = GuidanceOptions(args.cfg_zero_star, args.zero_init_steps, start, end)
    return {
        "cache": parse_cache_spec(args.cache) if args.cache else None,
        "guidance": None if guidance == GuidanceOptions() else guidance,
        "sigmas": parse_sigmas(args.sigmas) if args.sigmas else None,
    }


def _runtime_arguments(parser: argparse.ArgumentParser, out_default: str | None) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument("--device", help="cpu, cuda, cuda:1, mps, ... (unset = best available)")
    group.add_argument(
        "--dtype",
        help="fp32, bf16, fp16 (unset = bf16 on GPUs, fp32 on CPU); fp8_e4m3fn / int8 = DiT weights stored in "
        "fp8 / int8 (quantised at load), computed in the default dtype",
    )
    group.add_argument(
        "--offload",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep models in RAM between phases (default: on for GPUs)",
    )
    group.add_argument("--attention", default="auto", help="attention backend (auto, sdpa, sdpa_cudnn, int8, ...)")
    group.add_argument(
        "--fast-8bit",
        action="store_true",
        help="opt-in approximate 8-bit DiT compute (INT8/FP8 attention, FP8 matmuls; NVIDIA sm90+)",
    )
    group.add_argument(
        "--out", default=out_default, required=out_default is None, help="output video, .mp4 (H.264) or .webp"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wan_core", description="Wan2.1 / Wan2.2 video generation.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate a video")
    _model_arguments(gen)
    _sampling_arguments(gen)
    _speed_arguments(gen)
    _runtime_arguments(gen, out_default=None)
    cli_longvideo.add_arguments(gen)
    parallel_options.add_arguments(gen)
    tiny = sub.add_parser("make-tiny-models", help="write tiny random-weight model files")
    tiny.add_argument("directory")
    tiny.add_argument("--seed", type=_argtype(_number("--seed", int, "0")), default=0)
    tiny.add_argument("--only", nargs="+", help="write only these file names")
    test = sub.add_parser("selftest", help="tiny models + text-to-video on CPU, end to end")
    test.add_argument("--out", default="wan_selftest.mp4")
    test.add_argument("--frames", type=_argtype(parse_frames), default=17)
    test.add_argument("--size", type=_argtype(parse_size), default=(96, 64))
    test.add_argument("--steps", type=_argtype(_number("--steps", int, "4")), default=4)
    test.add_argument("--seed", type=_argtype(_number("--seed", int, "0")), default=0)
    test.add_argument("--device", default="cpu")
    test.add_argument("--models-dir", help="keep the tiny models here instead of a temporary folder")
    return parser


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


def _load_inputs(args: argparse.Namespace) -> Any:
    """The pixel inputs named on the command line, as GenerateInputs of float 0..1 tensors."""
    from .pipeline import GenerateInputs
    from .validation import CLI_NAMES, check_input_file
    from .video_io import load_frames, load_image

    def frames(path: str, name: str) -> Any:
        return load_frames(check_input_file(path, name, CLI_NAMES))

    return GenerateInputs(
        image=load_image(args.image, "image", CLI_NAMES) if args.image is not None else None,
        last_image=load_image(args.last_image, "last_image", CLI_NAMES) if args.last_image is not None else None,
        control_video=frames(args.control_video, "control_video") if args.control_video is not None else None,
        control_mask=frames(args.control_mask, "control_mask").mean(dim=-1) if args.control_mask is not None else None,
        # a list: references may differ in size (each is fitted to the video on its own)
        reference_images=[load_image(p, "reference_images", CLI_NAMES) for p in args.reference_image] or None,
    )


def _request(args: argparse.Namespace) -> Any:
    from .pipeline import GenerateParams

    width, height = args.size if args.size else (None, None)
    return GenerateParams(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        frames=args.frames,
        width=width,
        height=height,
        steps=args.steps,
        cfg=parse_cfg(args.cfg),
        shift=args.shift,
        solver=args.solver,
        seed=args.seed,
        fps=args.fps,
        vace_strength=1.0 if args.vace_strength is None else args.vace_strength,
        context_windows=cli_longvideo.context_windows(args),
        **_speed_options(args),
    )


def _one_or_shards(values: list[str] | None) -> Any:
    if not values:
        return None
    return values if len(values) > 1 else values[0]


def _emit(text: str) -> None:
    """The one machine-readable result line, on stdout (logging goes to stderr)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def preflight(args: argparse.Namespace) -> tuple[Any, Any, list[Any], Path]:
    """Every check that needs no model weights, before any model loads: output path, device, settings,
    input files, model headers and what the model can use. Returns (request, inputs, loras, out)."""
    from .devices import resolve_device, resolve_dtype
    from .dit.attention import check_backend
    from .model_fit import inspect_files
    from .validation import CLI_NAMES, check_generation, check_output_path

    out = check_output_path(args.out, CLI_NAMES)
    device = resolve_device(args.device)
    resolve_dtype(args.dtype, device)
    check_backend(args.attention)
    loras = [parse_lora(text) for text in args.lora]
    request, inputs = _request(args), _load_inputs(args)
    files = {
        "model": _one_or_shards(args.model),
        "model_low": _one_or_shards(args.model_low),
        "vae": args.vae,
        "text_encoder": args.text_encoder,
        "clip_vision": args.clip_vision,
    }
    facts = inspect_files(files, tokenizer=args.tokenizer, loras=loras, names=CLI_NAMES)
    request, inputs = check_generation(facts, request, inputs, device, CLI_NAMES)
    return request, inputs, loras, out


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
        model=_one_or_shards(args.model),
        model_low=_one_or_shards(args.model_low),
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


def _selftest_preflight(args: argparse.Namespace) -> None:
    """The selftest's settings checked before it writes models or samples (the tiny T2V model: multiples of 16)."""
    from .devices import resolve_device
    from .validation import CLI_NAMES, check_folder, check_number, check_output_path, check_size

    check_output_path(args.out, CLI_NAMES)
    resolve_device(args.device)
    for name in ("steps", "seed"):
        check_number(getattr(args, name), name, CLI_NAMES)
    width, height = (int(check_number(v, n, CLI_NAMES)) for v, n in zip(args.size, ("width", "height")))
    check_size(width, height, args.frames, 16, CLI_NAMES)
    if args.models_dir:
        check_folder(args.models_dir, "models_dir", CLI_NAMES)


def cmd_selftest(args: argparse.Namespace) -> int:
    import tempfile

    _selftest_preflight(args)
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


EMPTY_ALLOWED = ("prompt", "negative_prompt")  # an empty prompt is a prompt; an empty path or name is a slip


def _refuse_empty(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An empty value (an unset shell variable) is a syntax error, not "use the default"."""
    for dest, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        if dest not in EMPTY_ALLOWED and any(isinstance(v, str) and not v.strip() for v in values):
            parser.error(f"argument --{dest.replace('_', '-')}: an empty value was given (an unset variable?)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _refuse_empty(parser, args)
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
