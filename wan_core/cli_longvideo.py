"""``generate`` options for long videos and camera control (context windows, --extend, --camera)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    windows = parser.add_argument_group("long videos (context windows, continuation)")
    windows.add_argument(
        "--context-length",
        type=int,
        default=0,
        metavar="N",
        help="sample in windows of N latent frames (21 = 81 video frames); 0 = one window",
    )
    windows.add_argument("--context-overlap", type=int, default=6, metavar="N", help="latent frames windows share")
    windows.add_argument("--context-schedule", default="uniform", help="uniform, static, looped, batched")
    windows.add_argument("--context-blend", default="linear", help="linear or pyramid")
    windows.add_argument("--context-positions", default="real", help="RoPE positions per window: real or reset")
    windows.add_argument("--context-image", default="first", help="start image in the first window or every one")
    windows.add_argument("--freenoise", action="store_true", help="FreeNoise-style shuffled noise across windows")
    windows.add_argument("--extend", metavar="PATH", help="continue this video; --out gets the joined video")
    windows.add_argument("--overlap-frames", type=int, default=9, help="--extend: frames shared with the new run")
    windows.add_argument(
        "--color-match", type=float, default=1.0, help="--extend: 0..1 colour/brightness match to the old clip"
    )
    camera = parser.add_argument_group("camera (Wan-Fun camera models)")
    camera.add_argument("--camera", metavar="PRESET|FILE", help="a preset (orbit_left, zoom_in, ...) or a pose file")
    camera.add_argument("--camera-speed", type=float, default=1.0, help="preset speed (1 = the preset's full move)")


def context_windows(args: argparse.Namespace) -> Any:
    """ContextWindows from the flags, or None when --context-length is 0."""
    if not args.context_length:
        return None
    from .sampling.windows import ContextWindows

    return ContextWindows(
        length=args.context_length,
        overlap=args.context_overlap,
        schedule=args.context_schedule,
        blend=args.context_blend,
        positions=args.context_positions,
        image=args.context_image,
        freenoise=args.freenoise,
    )


def camera_trajectory(args: argparse.Namespace, frames: int) -> Any:
    """The --camera trajectory over ``frames`` frames (a pose file when the path exists, else a preset), or None."""
    if not args.camera:
        return None
    from .conditioning.camera import PRESETS, preset_trajectory, read_pose_file

    if Path(args.camera).is_file():
        return read_pose_file(args.camera)
    if args.camera.strip().lower().replace(" ", "_").replace("-", "_") not in PRESETS:
        raise InputError(f"--camera {args.camera!r} is neither a pose file nor a preset ({', '.join(PRESETS)}).")
    return preset_trajectory(args.camera, frames=frames, speed=args.camera_speed)


def run_frames(args: argparse.Namespace, pipe: Any) -> int:
    """--frames, or the loaded model's default frame count."""
    if args.frames:
        return int(args.frames)
    from .configs import defaults_for

    return defaults_for(pipe.models.family, pipe.dit.config.task).frames


def extend(args: argparse.Namespace, pipe: Any, request: Any, hooks: Any) -> Any:
    """Run --extend: read the previous video, generate the continuation, return the joined result."""
    from .longvideo import extend_video
    from .video_io import read_video

    if not Path(args.extend).is_file():
        raise InputError(f"--extend {args.extend!r} does not exist.")
    previous, fps = read_video(args.extend)
    return extend_video(
        pipe,
        request,
        previous,
        overlap=args.overlap_frames,
        color_match=args.color_match,
        camera=camera_trajectory(args, run_frames(args, pipe)),
        hooks=hooks,
        source_fps=fps,
    )
