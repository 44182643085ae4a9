"""The command line's arguments: ``build_parser`` and the value parsers its options use.

Parsers turn text into values and raise InputError with the flag's name; ranges, finiteness
and what the model can use are checked later, together (:mod:`wan_core.cli_preflight`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from . import cli_longvideo
from .errors import InputError
from .parallel import options as parallel_options


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
    group.add_argument(
        "--attention", default="auto", help="attention backend (auto, sdpa, sdpa_cudnn, flash_attn, fp8, int8, ...)"
    )
    group.add_argument(
        "--fast-8bit",
        action="store_true",
        help="opt-in approximate 8-bit DiT compute (FP8 matmuls; FP8 attention with flash-attn 3; NVIDIA sm90+)",
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


EMPTY_ALLOWED = ("prompt", "negative_prompt")  # an empty prompt is a prompt; an empty path or name is a slip


def refuse_empty(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An empty value (an unset shell variable) is a syntax error, not "use the default"."""
    for dest, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        if dest not in EMPTY_ALLOWED and any(isinstance(v, str) and not v.strip() for v in values):
            parser.error(f"argument --{dest.replace('_', '-')}: an empty value was given (an unset variable?)")
