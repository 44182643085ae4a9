"""Video I/O: H.264 yuv420p mp4 and animated WebP round trips, metadata, images."""

import av
import numpy as np
import pytest
import torch
from PIL import Image

from wan_core.errors import InputError
from wan_core.video_io import load_frames, load_image, read_metadata, read_video, write_video


def _smooth_video(frames: int, height: int, width: int) -> torch.Tensor:
    """A gradient that moves over time: compresses well, so decoded values stay close."""
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    out = []
    for f in range(frames):
        phase = f / max(frames, 1)
        out.append(
            torch.stack(
                [
                    xs.expand(height, width) * 0.8 + 0.1,
                    ys.expand(height, width) * 0.6 + 0.2 * phase + 0.1,
                    torch.full((height, width), 0.3 + 0.4 * phase),
                ],
                dim=-1,
            )
        )
    return torch.stack(out)


def test_mp4_round_trip_is_h264_yuv420p_with_metadata(tmp_path):
    video = _smooth_video(9, 48, 64)
    meta = {"prompt": "a cat 色调", "seed": 7, "cfg": 5.0}
    path = write_video(video, tmp_path / "clip.mp4", fps=16, metadata=meta)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
    frames, fps = read_video(path)
    assert frames.shape == (9, 48, 64, 3) and frames.dtype == torch.float32
    assert fps == pytest.approx(16.0)
    assert (frames - video).abs().mean() < 0.02
    assert read_metadata(path) == meta


def test_mp4_odd_size_is_padded_to_even(tmp_path):
    video = torch.rand(3, 33, 47, 3)
    frames, _ = read_video(write_video(video, tmp_path / "odd.mp4", fps=24))
    assert frames.shape == (3, 34, 48, 3)


def test_fractional_fps_and_numpy_input(tmp_path):
    video = _smooth_video(5, 32, 32).numpy()
    _, fps = read_video(write_video(video, tmp_path / "ntsc.mp4", fps=24000 / 1001))
    assert fps == pytest.approx(23.976, abs=1e-3)


def test_webp_round_trip_with_metadata(tmp_path):
    video = _smooth_video(4, 32, 40)
    path = write_video(video, tmp_path / "clip.webp", fps=8, metadata={"steps": 3})
    frames, fps = read_video(path)
    assert frames.shape == (4, 32, 40, 3)
    assert fps == pytest.approx(8.0, rel=0.05)
    assert (frames - video).abs().mean() < 0.05
    assert read_metadata(path) == {"steps": 3}


def test_no_metadata_reads_as_empty(tmp_path):
    path = write_video(torch.zeros(1, 16, 16, 3), tmp_path / "plain.mp4")
    assert read_metadata(path) == {}


def test_bad_inputs_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="ending in"):
        write_video(torch.zeros(1, 8, 8, 3), tmp_path / "clip.avi")
    with pytest.raises(InputError, match=r"\[F, H, W, 3\]"):
        write_video(torch.zeros(8, 8), tmp_path / "clip.mp4")
    with pytest.raises(InputError, match="does not exist"):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="not an image"):
        load_image(tmp_path / "junk.png")


def test_load_image_and_load_frames(tmp_path):
    rgba = np.zeros((10, 12, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "red.png")
    image = load_image(tmp_path / "red.png")
    assert image.shape == (1, 10, 12, 3)
    assert torch.allclose(image[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(load_frames(tmp_path / "red.png"), image)
    write_video(torch.rand(5, 16, 16, 3), tmp_path / "v.mp4")
    assert load_frames(tmp_path / "v.mp4", max_frames=3).shape == (3, 16, 16, 3)
