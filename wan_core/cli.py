"""``python -m wan_core``: generate videos, write tiny test models, run a self-test.

    python -m wan_core generate --model M --vae V --text-encoder T --prompt "..." --out out.mp4
    python -m wan_core make-tiny-models DIR
    python -m wan_core selftest [--out wan_selftest.mp4]

See docs/CLI.md for every option. Exit codes: 0 ok, 1 a WanError (bad input or
model file; the message says what to do), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import cli_longvideo
from .errors import InputError, WanError, WanInterrupted
from .parallel import options as parallel_options

log = logging.getLogger("wan_core.cli")


def parse_size(text: str) -> tuple[int, int]:
    """'832x480' (or '832*480') -> (width, height) in pixels."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"--size must look like 832x480 (width x height); got {text!r}.") from None
    return width, height


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

    strengths: list[float] = []
    path = text
    while ":" in path:
        head, tail = path.rsplit(":", 1)
        try:
            value = float(tail)
        except ValueError:
            break  # a drive letter or a colon in the file name
        strengths.insert(0, value)
        path = head
    if len(strengths) > 2:
        raise InputError(f"--lora takes path[:strength[:strength_low]]; got {text!r}.")
    if not Path(path).is_file():
        raise InputError(f"LoRA file {path!r} does not exist.")
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
    group.add_argument("--frames", type=int, help="pixel frames, 4n+1")
    group.add_argument("--size", type=parse_size, help="WIDTHxHEIGHT, e.g. 832x480")
    group.add_argument("--steps", type=int)
    group.add_argument(
        "--cfg", type=str, help="guidance scale, or LOW,HIGH: the low- and high-noise A14B experts' scales"
    )
    group.add_argument("--shift", type=float)
    group.add_argument("--solver", help="unipc, dpm++, euler")
    group.add_argument("--seed", type=int, help="unset = random (stored in the file)")
    group.add_argument("--fps", type=float)
    group.add_argument("--image", help="start image (I2V, FLF2V, TI2V, Fun)")
    group.add_argument("--last-image", help="end image (FLF2V)")
    group.add_argument("--control-video", help="VACE / Fun-Control control video")
    group.add_argument("--control-mask", help="VACE mask video (white = generate)")
    group.add_argument("--reference-image", action="append", default=[], help="VACE reference image (repeatable)")
    group.add_argument("--vace-strength", type=float, default=1.0)


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
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--only", nargs="+", help="write only these file names")
    test = sub.add_parser("selftest", help="tiny models + text-to-video on CPU, end to end")
    test.add_argument("--out", default="wan_selftest.mp4")
    test.add_argument("--frames", type=int, default=17)
    test.add_argument("--size", type=parse_size, default=(96, 64))
    test.add_argument("--steps", type=int, default=4)
    test.add_argument("--seed", type=int, default=0)
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


def _load_inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The pixel inputs named on the command line, as float 0..1 tensors."""
    import torch

    from .video_io import load_frames, load_image

    inputs: dict[str, Any] = {}
    if args.image:
        inputs["image"] = load_image(args.image)
    if args.last_image:
        inputs["last_image"] = load_image(args.last_image)
    if args.control_video:
        inputs["control_video"] = load_frames(args.control_video)
    if args.control_mask:
        inputs["control_mask"] = load_frames(args.control_mask).mean(dim=-1)  # [F, H, W]
    if args.reference_image:
        inputs["reference_images"] = torch.cat([load_image(p) for p in args.reference_image])
    return inputs


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
    loras = [parse_lora(text) for text in args.lora]
    inputs = _load_inputs(args)
    pipe = WanPipeline.from_files(
        model=args.model if len(args.model) > 1 else args.model[0],
        model_low=(args.model_low if len(args.model_low) > 1 else args.model_low[0]) if args.model_low else None,
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
    width, height = args.size if args.size else (None, None)
    hooks, progress = _run_hooks(args)
    params = dict(
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
        vace_strength=args.vace_strength,
        context_windows=cli_longvideo.context_windows(args),
        **_speed_options(args),
    )
    try:
        if args.extend:
            result = cli_longvideo.extend(args, pipe, params, hooks)
        else:
            camera = cli_longvideo.camera_trajectory(args, cli_longvideo.run_frames(args, pipe))
            result = pipe.generate(params.pop("prompt"), hooks=hooks, camera=camera, **params, **inputs)
    finally:
        progress.close()
    path = result.save(args.out)
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


def cmd_make_tiny_models(args: argparse.Namespace) -> int:
    from .tiny_build import write_tiny_models

    try:
        written = write_tiny_models(args.directory, seed=args.seed, names=tuple(args.only) if args.only else None)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None
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
    from .tiny_build import write_tiny_models

    started = time.perf_counter()
    paths = write_tiny_models(models_dir, seed=0, names=SELFTEST_FILES, overwrite=False)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    _setup_logging(args)
    try:
        with _bars_and_logs():
            return COMMANDS[args.command](args)
    except (WanInterrupted, KeyboardInterrupt):
        log.error("Interrupted.")
        return 130
    except WanError as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        return 1
