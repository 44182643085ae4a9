"""From parsed arguments to a checked request, before any model loads (``generate`` and ``selftest``).

Every check that needs no model weights runs here: output path, device, settings, input files,
model headers and what the model can use (see :mod:`wan_core.validation`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import cli_longvideo
from .cli_args import parse_cfg, parse_lora
from .errors import InputError


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


def _load_inputs(args: argparse.Namespace) -> Any:
    """The pixel inputs named on the command line, as GenerateInputs of float 0..1 tensors."""
    from .request import GenerateInputs
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
    from .request import GenerateParams

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


def one_or_shards(values: list[str] | None) -> Any:
    if not values:
        return None
    return values if len(values) > 1 else values[0]


def preflight(args: argparse.Namespace) -> tuple[Any, Any, list[Any], Path]:
    """Every check that needs no model weights, before any model loads: output path, device, settings,
    input files, model headers and what the model can use. Returns (request, inputs, loras, out)."""
    from .devices import resolve_device, resolve_dtype
    from .dit.attention import check_backend
    from .model_fit import inspect_files
    from .request_checks import check_generation
    from .validation import CLI_NAMES, check_output_path

    out = check_output_path(args.out, CLI_NAMES)
    device = resolve_device(args.device)
    resolve_dtype(args.dtype, device)
    check_backend(args.attention)
    loras = [parse_lora(text) for text in args.lora]
    request, inputs = _request(args), _load_inputs(args)
    files = {
        "model": one_or_shards(args.model),
        "model_low": one_or_shards(args.model_low),
        "vae": args.vae,
        "text_encoder": args.text_encoder,
        "clip_vision": args.clip_vision,
    }
    facts = inspect_files(files, tokenizer=args.tokenizer, loras=loras, names=CLI_NAMES)
    request, inputs = check_generation(facts, request, inputs, device, CLI_NAMES)
    return request, inputs, loras, out


def selftest_preflight(args: argparse.Namespace) -> None:
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
