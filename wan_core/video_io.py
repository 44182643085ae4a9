"""Reading and writing videos and images for the standalone pipeline and the CLI.

Frames travel as float tensors ``[F, H, W, 3]`` in 0..1 (ComfyUI's IMAGE layout).
``.mp4`` is written as H.264 yuv420p through PyAV (its wheels ship libx264, no
system ffmpeg needed); ``.webp`` as an animated WebP through Pillow. Generation
parameters are stored inside the file as JSON: in the mp4 ``comment`` tag, or in
the WebP's EXIF ImageDescription, so a clip always says how it was made.

Writing is atomic (:mod:`wan_core.atomic`): a failure, Ctrl-C or SIGTERM leaves nothing at the
path and keeps a file already there. Same frames + same metadata give the same bytes with the
same PyAV/libx264 build: x264's output depends on its thread count, which by default follows the
CPUs the calling thread may run on (affinity, cgroups), so it is fixed (:data:`X264_THREADS`);
frames carry explicit timestamps. Other builds of libx264/FFmpeg may still encode differently.
"""

from __future__ import annotations

import json
import logging
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from .atomic import atomic_path
from .errors import InputError, NonFiniteError, OutputError, WanError
from .finite import all_finite
from .images import STILL_SUFFIXES, load_image
from .validation import VIDEO_SUFFIXES, check_number, check_output_path

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
METADATA_TAG = "comment"
EXIF_IMAGE_DESCRIPTION = 0x010E
X264_THREADS = 8  # fixed: x264's output depends on its thread count (see the module docstring)

__all__ = ["VIDEO_SUFFIXES", "load_frames", "load_image", "read_metadata", "read_video", "write_video"]


def _to_uint8_frames(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """[F, H, W, 3] float 0..1 (torch or numpy) -> uint8 numpy [F, H, W, 3]; NaN/Inf frames are refused."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().to("cpu", torch.float32).numpy()
    if not isinstance(frames, np.ndarray):
        raise InputError(f"Video frames must be a tensor [F, H, W, 3]; got {type(frames).__name__}.")
    arr = np.asarray(frames, dtype=np.float32)
    if arr.ndim == 3:  # a single frame
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4) or 0 in arr.shape:
        raise InputError(f"Video frames must be shaped [F, H, W, 3] with F >= 1; got {tuple(arr.shape)}.")
    if not all_finite(torch.from_numpy(arr)):
        raise NonFiniteError(
            "The video frames contain NaN/Inf values (the video would be black); the decode or an earlier "
            "step went wrong: see the log, lower cfg or LoRA strengths, or load the models in bf16/fp32."
        )
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    arr = arr[..., :3]
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _even_dims(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even width and height: pad one edge-replicated row/column if odd."""
    _f, h, w, _c = frames.shape
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        log.info(
            "H.264 yuv420p needs even sizes: padding %dx%d to %dx%d by repeating the edge.", w, h, w + pad_w, h + pad_h
        )
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(check_number(fps, "fps")).limit_denominator(1001)


def _json_safe(value: Any) -> Any:
    """Non-finite floats -> their names as strings (JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _metadata_json(metadata: dict[str, Any] | None, ascii_only: bool = False) -> str | None:
    """Strict JSON text of ``metadata``; non-ASCII is escaped for EXIF (ASCII: WebP) and whenever the
    text is not encodable as UTF-8 (lone surrogates from undecodable command-line bytes)."""
    if not metadata:
        return None
    text = json.dumps(_json_safe(metadata), ensure_ascii=ascii_only, default=str, sort_keys=True, allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(_json_safe(metadata), ensure_ascii=True, default=str, sort_keys=True, allow_nan=False)
    return text


def write_video(
    frames: torch.Tensor | np.ndarray,
    path: PathLike,
    fps: float = 16.0,
    metadata: dict[str, Any] | None = None,
    crf: int = 17,
    *,
    keyed_metadata: bool = False,
) -> Path:
    """Write frames [F, H, W, 3] float 0..1 to ``path`` (.mp4: H.264 yuv420p; .webp: animated), atomically.

    ``metadata`` is stored as JSON (see module docstring); ``crf`` is the x264
    quality (lower = better, 0 = lossless luma). ``keyed_metadata`` also stores each
    top-level key of ``metadata`` on its own, as ComfyUI's own savers do, so that
    dropping the file on ComfyUI's editor loads its ``workflow`` (mp4: keyed ``mdta``
    tags; webp: EXIF strings ``"key:json"``). Returns the path written.
    """
    path = check_output_path(path)
    rate = _fps_fraction(fps)
    data = _to_uint8_frames(frames)
    keyed = _keyed_values(metadata) if keyed_metadata else {}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            if path.suffix.lower() == ".mp4":
                _write_mp4(data, tmp, rate, _metadata_json(metadata), crf, keyed)
            else:
                _write_webp(data, tmp, float(rate), _metadata_json(metadata, ascii_only=True), keyed)
    except WanError:
        raise
    except (
        OSError,
        ValueError,
        RuntimeError,
    ) as exc:  # disk full, permissions, encoder failures (PyAV errors are OSError)
        raise OutputError(
            f"Could not write {str(path)!r} ({type(exc).__name__}: {exc}); nothing was written there. Free disk "
            "space or choose another output path."
        ) from exc
    log.info("Wrote %d frames (%dx%d, %.3g fps) to %s", data.shape[0], data.shape[2], data.shape[1], fps, path)
    return path


def _keyed_values(metadata: dict[str, Any] | None) -> dict[str, str]:
    """{key: ASCII JSON of its value} (ASCII: EXIF strings are ASCII)."""
    return {str(k): json.dumps(v, ensure_ascii=True, default=str) for k, v in (metadata or {}).items()}


def _write_mp4(
    data: np.ndarray, path: Path, fps: Fraction, comment: str | None, crf: int, keyed: dict[str, str]
) -> None:
    import av

    data = _even_dims(data)
    # use_metadata_tags writes every tag as a keyed mdta item (moov/udta/meta/keys+ilst): how ComfyUI reads them
    options = {"movflags": "use_metadata_tags"} if keyed else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        for key, value in keyed.items():
            container.metadata[key] = value
        if comment is not None:
            container.metadata[METADATA_TAG] = comment
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = data.shape[2], data.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / fps
        stream.options = {"crf": str(int(crf)), "preset": "medium", "threads": str(X264_THREADS)}
        for index, frame in enumerate(data):
            _encode_frame(container, stream, frame, index)
        for packet in stream.encode():
            container.mux(packet)


def _encode_frame(container: Any, stream: Any, frame: np.ndarray, index: int) -> None:
    """Encode one rgb24 frame with an explicit timestamp (frame ``index`` in units of 1/fps)."""
    import av

    video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    video_frame.pts = index
    video_frame.time_base = stream.time_base
    for packet in stream.encode(video_frame):
        container.mux(packet)


def _keyed_exif_tags(keyed: dict[str, str]) -> dict[int, str]:
    """ComfyUI's animated-WebP layout: prompt in Model (0x0110), other keys from Make (0x010F) down,
    skipping ImageDescription (ours)."""
    tags: dict[int, str] = {}
    free = [t for t in range(0x010F, 0x0100, -1) if t != EXIF_IMAGE_DESCRIPTION]
    for key, value in keyed.items():
        tags[0x0110 if key == "prompt" and 0x0110 not in tags else free.pop(0)] = f"{key}:{value}"
    return tags


def _write_webp(data: np.ndarray, path: Path, fps: float, comment: str | None, keyed: dict[str, str]) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in data]
    kwargs: dict[str, Any] = {
        "save_all": True,
        "append_images": images[1:],
        "duration": round(1000.0 / fps),
        "loop": 0,
        "lossless": False,
        "quality": 90,
    }
    if comment is not None or keyed:
        exif = Image.Exif()
        if comment is not None:
            exif[EXIF_IMAGE_DESCRIPTION] = comment
        for tag, text in _keyed_exif_tags(keyed).items():
            exif[tag] = text
        kwargs["exif"] = exif.tobytes()
    images[0].save(path, format="WEBP", **kwargs)  # Pillow's WebP encoder is single-threaded: deterministic


def _check_readable(path: Path) -> None:
    from .validation import file_problem

    problem = file_problem(path)
    if problem:
        raise InputError(f"Video file {str(path)!r} {problem}.")


def read_video(path: PathLike, max_frames: int | None = None) -> tuple[torch.Tensor, float]:
    """Read a video (anything PyAV/ffmpeg decodes, or an animated WebP/GIF) -> (frames, fps).

    frames: float32 [F, H, W, 3] in 0..1; fps in frames per second.
    """
    path = Path(path)
    _check_readable(path)
    if path.suffix.lower() in (".webp", ".gif"):
        frames, fps = _read_pil_animation(path, max_frames)
    else:
        frames, fps = _read_av(path, max_frames)
    if not frames:
        raise InputError(f"No video frames could be decoded from {str(path)!r}.")
    video = torch.from_numpy(np.stack(frames)).float().div_(255.0)
    return video, fps


def _read_av(path: Path, max_frames: int | None) -> tuple[list[np.ndarray], float]:
    import av
    from av.error import FFmpegError

    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(16)
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (FFmpegError, IndexError) as exc:
        raise InputError(f"Could not decode video {str(path)!r}: {exc}") from exc
    return frames, float(rate)


def _read_pil_animation(path: Path, max_frames: int | None) -> tuple[list[np.ndarray], float]:
    from PIL import Image, ImageSequence

    frames: list[np.ndarray] = []
    durations: list[float] = []
    try:
        with Image.open(path) as image:
            for frame in ImageSequence.Iterator(image):
                frames.append(np.asarray(frame.convert("RGB")))
                durations.append(float(frame.info.get("duration", 0) or 0))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (Image.DecompressionBombError, MemoryError) as exc:
        raise InputError(f"Video {str(path)!r} is too large to decode ({exc}); downscale it.") from None
    except Exception as exc:  # Pillow raises many types for damaged files
        raise InputError(f"Could not decode video {str(path)!r} ({type(exc).__name__}: {exc}): re-export it.") from None
    mean_ms = sum(durations) / len(durations) if durations and sum(durations) > 0 else 1000.0 / 16
    return frames, 1000.0 / mean_ms


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The JSON parameters :func:`write_video` stored in the file ({} when there are none)."""
    path = Path(path)
    _check_readable(path)
    if path.suffix.lower() == ".webp":
        from PIL import Image

        with Image.open(path) as image:
            text = image.getexif().get(EXIF_IMAGE_DESCRIPTION)
    else:
        import av

        with av.open(str(path)) as container:
            text = container.metadata.get(METADATA_TAG)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"comment": text}
    return value if isinstance(value, dict) else {"comment": value}


def load_frames(path: PathLike, max_frames: int | None = None) -> torch.Tensor:
    """A video file, or a still image used as a one-frame video -> [F, H, W, 3] float 0..1."""
    suffix = Path(path).suffix.lower()
    if suffix in STILL_SUFFIXES:
        return load_image(path)
    return read_video(path, max_frames)[0]
