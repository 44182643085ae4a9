"""Control preprocessing: edges, depth/grayscale, fitting to size, resampling to 4n+1 frames and fps."""

import pytest
import torch

from wan_core.conditioning.control import (
    canny,
    fit_frames,
    normalize_depth,
    pose_frames,
    resample_video,
    soft_edge,
    to_grayscale,
)
from wan_core.errors import InputError


def square_clip(n: int = 2, size: int = 32) -> torch.Tensor:
    frames = torch.zeros(n, size, size, 3)
    frames[:, 8:24, 8:24] = 1.0
    return frames


def test_canny_finds_the_square_outline_only():
    edges = canny(square_clip(), 50, 150)
    assert edges.shape == (2, 32, 32, 3) and set(edges.unique().tolist()) <= {0.0, 1.0}
    on = edges[0, ..., 0] > 0
    assert on[8:24, 7:9].any() and on[7:9, 8:24].any()  # left and top sides
    assert not on[12:20, 12:20].any() and not on[:4].any()  # flat inside and outside
    assert torch.equal(canny(square_clip(), 50 / 255, 150 / 255), edges)  # fraction convention
    with pytest.raises(InputError, match="swap"):
        canny(square_clip(), 200, 100)


def test_canny_threshold_suppresses_weak_edges():
    weak = torch.full((1, 32, 32, 3), 0.4)
    weak[:, 8:24, 8:24] = 0.5  # a step of ~25 grey levels
    assert canny(weak, 10, 20).sum() > 0
    assert canny(weak, 300, 400).sum() == 0


@pytest.mark.parametrize("method", ["sobel", "laplacian"])
def test_soft_edge(method):
    out = soft_edge(square_clip(), method)
    assert out.shape == (2, 32, 32, 3)
    assert abs(float(out.max()) - 1.0) < 1e-6 and float(out.min()) >= 0
    assert out[0, 14:18, 14:18].abs().sum() == 0 and out[0, 8:24, 7:9].sum() > 0
    with pytest.raises(InputError, match="sobel"):
        soft_edge(square_clip(), "prewitt")


def test_grayscale_and_depth():
    frames = torch.rand(3, 8, 8, 3)
    gray = to_grayscale(frames)
    expected = 0.299 * frames[..., 0] + 0.587 * frames[..., 1] + 0.114 * frames[..., 2]
    assert torch.allclose(gray[..., 1], expected)
    depth = torch.linspace(2.0, 10.0, 3 * 8 * 8).reshape(3, 8, 8)  # metres
    norm = normalize_depth(depth)
    assert norm.shape == (3, 8, 8, 3) and float(norm.min()) == 0.0 and abs(float(norm.max()) - 1.0) < 1e-6
    assert torch.allclose(normalize_depth(depth, invert=True), 1 - norm)
    # normalised over the clip, not per frame: frame 0 stays dark
    assert float(norm[0].max()) < 0.34


def test_pose_passthrough_drops_alpha():
    rgba = torch.rand(2, 8, 8, 4) * 1.2
    out = pose_frames(rgba)
    assert out.shape == (2, 8, 8, 3) and float(out.max()) <= 1.0


def test_fit_frames_modes():
    wide = torch.zeros(1, 20, 80, 3)
    wide[:, :, 30:50] = 1.0  # white center band
    crop = fit_frames(wide, 40, 40, "crop")
    assert crop.shape == (1, 40, 40, 3) and float(crop[0, 20, 20, 0]) > 0.99
    letter = fit_frames(wide, 40, 40, "letterbox", fill=0.25)
    assert letter.shape == (1, 40, 40, 3)
    assert torch.allclose(letter[0, :10], torch.full((10, 40, 3), 0.25))  # bars above and below
    assert torch.allclose(letter[0, -10:], torch.full((10, 40, 3), 0.25))
    stretch = fit_frames(wide, 40, 40, "stretch")
    assert stretch.shape == (1, 40, 40, 3) and float(stretch[0, 20, 20, 0]) > 0.99
    assert float(stretch[0, 20, 0, 0]) < 0.01
    with pytest.raises(InputError, match="letterbox"):
        fit_frames(wide, 40, 40, "zoom")


def test_resample_video_to_fps_and_4n1():
    clip = torch.arange(61.0).view(61, 1, 1, 1).expand(61, 2, 2, 3)  # 2 s at 30 fps, value = index
    out = resample_video(clip, 30, 16)
    # 2 s at 16 fps = 33 frames (already 4n+1); frame i shows source round(i * 30 / 16)
    assert out.shape[0] == 33
    assert out[:, 0, 0, 0].tolist() == [float(min(60, int(i * 30 / 16 + 0.5))) for i in range(33)]
    assert resample_video(clip[:50], 30, 16).shape[0] == 25  # 27 frames fit -> rounded down to 25
    assert resample_video(clip[:50], 30, 16, round_to_4n1=False).shape[0] == 27


def test_resample_video_to_frame_count():
    clip = torch.arange(10.0).view(10, 1, 1, 1)
    out = resample_video(clip, 24, frames=5)  # stretched uniformly over the clip
    assert out.flatten().tolist() == [0.0, 2.0, 5.0, 7.0, 9.0]
    padded = resample_video(clip, 8, dst_fps=16, frames=21)  # too short: last frame repeats
    assert padded.shape[0] == 21 and padded[-1].item() == 9.0
    assert resample_video(clip, 24, frames=8).shape[0] == 9  # auto-rounded to 4n+1
    with pytest.raises(InputError, match="positive"):
        resample_video(clip, 0, 16)
