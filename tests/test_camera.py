"""Fun-Camera: Plücker rays of known poses, presets, pose files, the model-input layout, loading both
checkpoint layouts and running them end to end on tiny models."""

from __future__ import annotations

import math

import pytest
import torch

import wan_core
from wan_core.conditioning.camera import (
    BASE_ANGLE,
    BASE_TRANSLATION,
    PRESETS,
    CameraTrajectory,
    axis_rotation,
    camera_embedding,
    latent_layout,
    plucker_rays,
    preset_trajectory,
    read_pose_file,
)
from wan_core.conditioning.camera_preview import render_trajectory
from wan_core.dit.config import RELEASED, config_from_shapes, released_config
from wan_core.dit.model import WanDiT
from wan_core.dit.tiny import tiny_dit_state_dict
from wan_core.errors import ConditioningError, InputError

W, H = 8, 6
K = (0.5, 0.75, 0.5, 0.5)  # fx, fy, cx, cy as fractions; square pixels at aspect W/H = 4/3


def trajectory(c2w: torch.Tensor) -> CameraTrajectory:
    return CameraTrajectory(torch.tensor(K, dtype=torch.float64).expand(len(c2w), 4).clone(), c2w, W / H)


def hand_directions(fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
    """[H, W, 3] unit camera-space directions through pixel centres, computed loop by loop."""
    out = torch.zeros(H, W, 3, dtype=torch.float64)
    for v in range(H):
        for u in range(W):
            d = torch.tensor([(u + 0.5 - cx) / fx, (v + 0.5 - cy) / fy, 1.0], dtype=torch.float64)
            out[v, u] = d / d.norm()
    return out


def pose(rotation: torch.Tensor, centre) -> torch.Tensor:
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3], m[:3, 3] = rotation, torch.tensor(centre, dtype=torch.float64)
    return m


def test_pure_translation_gives_constant_ray_directions():
    centres = [(0.0, 0.0, 0.0), (0.3, -0.1, 0.0), (-1.0, 0.5, 2.0)]
    rays = plucker_rays(trajectory(torch.stack([pose(torch.eye(3), c) for c in centres])), W, H).double()
    expected_d = hand_directions(0.5 * W, 0.75 * H, 0.5 * W, 0.5 * H).permute(2, 0, 1)
    for i, centre in enumerate(centres):
        assert torch.allclose(rays[i, 3:], expected_d, atol=1e-6)  # the same directions in every frame
        o = torch.tensor(centre, dtype=torch.float64)[:, None, None].expand(3, H, W)
        assert torch.allclose(rays[i, :3], torch.linalg.cross(o, expected_d, dim=0), atol=1e-6)
    assert torch.count_nonzero(rays[0, :3]) == 0  # the first camera sits at the origin: no moment


def test_pure_yaw_rotates_the_rays_about_the_vertical_axis():
    angles = [0.0, 0.2, -0.7]
    rays = plucker_rays(trajectory(torch.stack([pose(axis_rotation("y", a), (0, 0, 0)) for a in angles])), W, H)
    d0 = hand_directions(0.5 * W, 0.75 * H, 0.5 * W, 0.5 * H)
    for i, a in enumerate(angles):
        x, y, z = d0.unbind(-1)
        # hand-written yaw: x' = cos a x + sin a z, y' = y, z' = -sin a x + cos a z
        expected = torch.stack([math.cos(a) * x + math.sin(a) * z, y, -math.sin(a) * x + math.cos(a) * z])
        assert torch.allclose(rays[i, 3:].double(), expected, atol=1e-6)
        assert float(rays[i, :3].abs().max()) == 0.0  # rotation about the origin: o = 0, no moment


def test_poses_are_taken_relative_to_the_first_camera():
    c2w = torch.stack([pose(axis_rotation("y", 0.1 * i), (0.2 * i, 0, 0.1 * i)) for i in range(5)])
    world = pose(axis_rotation("x", 0.4) @ axis_rotation("z", -1.1), (3.0, -2.0, 5.0))
    a = plucker_rays(trajectory(c2w), W, H)
    b = plucker_rays(trajectory(world @ c2w), W, H)
    assert torch.allclose(a, b, atol=1e-5)


def test_presets_move_as_named():
    n = 9
    last = {name: preset_trajectory(name, n, speed=1.0).c2w[-1] for name in PRESETS}
    amount = (n - 1) / n
    assert torch.allclose(last["static"], torch.eye(4, dtype=torch.float64))
    assert last["pan_left"][0, 3] == pytest.approx(-BASE_TRANSLATION * amount)  # camera centre moves left (-x)
    assert last["pan_up"][1, 3] == pytest.approx(-BASE_TRANSLATION * amount)  # y points down
    assert last["zoom_in"][2, 3] == pytest.approx(2 * BASE_TRANSLATION * amount)  # forward
    forward = {name: m[:3, 2] for name, m in last.items()}
    assert forward["tilt_up"][1] < 0 and forward["turn_left"][0] < 0 and forward["turn_right"][0] > 0
    a = BASE_ANGLE * amount
    assert torch.allclose(last["turn_right"][:3, :3], axis_rotation("y", a))
    # orbit: the camera circles a point ahead and keeps facing it
    for name in ("orbit_left", "orbit_right"):
        centre, look = last[name][:3, 3], last[name][:3, 2]
        target = preset_trajectory(name, n).c2w[0][:3, 3] + torch.tensor([0.0, 0.0, 1.0]) * (
            BASE_TRANSLATION / math.sin(BASE_ANGLE)
        )
        to_target = (target - centre) / (target - centre).norm()
        assert torch.allclose(look, to_target, atol=1e-9)
    assert last["orbit_left"][0, 3] < 0 < last["orbit_right"][0, 3]
    slow = preset_trajectory("pan_right", n, speed=0.5).c2w[-1]
    assert slow[0, 3] == pytest.approx(0.5 * last["pan_right"][0, 3])
    with pytest.raises(InputError, match="orbit_left"):
        preset_trajectory("dolly", 9)


def test_camera_ctrl_pose_file(tmp_path):
    """Two lines of a RealEstate10K / CameraCtrl file: frame fx fy cx cy k1 k2 + world-to-camera 3x4."""
    w2c = pose(axis_rotation("y", 0.3), (0.5, 0.0, -0.2))
    lines = ["https://www.youtube.com/watch?v=example"]
    for m in (torch.eye(4, dtype=torch.float64), w2c):
        lines.append(
            " ".join(["0", "0.53", "0.95", "0.5", "0.5", "0", "0"] + [repr(float(v)) for v in m[:3].flatten()])
        )
    path = tmp_path / "poses.txt"
    path.write_text("\n".join(lines) + "\n")
    traj = read_pose_file(path)
    assert traj.frames == 2 and traj.intrinsics[1].tolist() == [0.53, 0.95, 0.5, 0.5]
    assert torch.allclose(traj.c2w[1], torch.linalg.inv(w2c))
    assert torch.allclose(read_pose_file(path.read_text()).c2w, traj.c2w)  # inline text works too
    assert traj.fit_length(1).frames == 1 and traj.fit_length(5).frames == 5
    bad = tmp_path / "bad.txt"
    bad.write_text("0 1 2 3\n")
    with pytest.raises(InputError, match="19"):
        read_pose_file(bad)


def test_pose_file_pan_left_matches_the_pan_left_preset(tmp_path):
    """VideoX-Fun's Pan_Left.txt moves the world-to-camera translation to +x: the camera goes left, as the preset."""
    n = 9
    lines = [""] + [
        f"0 0.532139961 0.946026558 0.5 0.5 0 0 1 0 0 {BASE_TRANSLATION * i / n} 0 1 0 0 0 0 1 0" for i in range(n)
    ]
    (tmp_path / "Pan_Left.txt").write_text("\n".join(lines))
    from_file = camera_embedding(read_pose_file(tmp_path / "Pan_Left.txt"), n, 32, 16)
    preset = camera_embedding(preset_trajectory("pan_left", n), n, 32, 16)
    assert torch.allclose(from_file, preset, atol=1e-5)


def test_latent_layout_repeats_frame_zero_and_groups_four_frames():
    rays = torch.arange(9 * 6, dtype=torch.float32).reshape(9, 6, 1, 1).expand(9, 6, 2, 3)
    out = latent_layout(rays)
    assert out.shape == (1, 24, 3, 2, 3)
    for c in range(6):
        for k in range(4):
            assert torch.equal(out[0, 4 * c + k, 0], rays[0, c])  # latent frame 0: frame 0, four times
            for t in (1, 2):
                assert torch.equal(out[0, 4 * c + k, t], rays[4 * t - 3 + k, c])
    with pytest.raises(InputError, match="4n\\+1"):
        latent_layout(rays[:8])


def test_trajectory_preview_is_an_image():
    image = render_trajectory(preset_trajectory("orbit_left", 33), 256, 128)
    assert image.shape == (1, 128, 256, 3) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert float(image.std()) > 0.01
    assert not torch.equal(image, render_trajectory(preset_trajectory("zoom_in", 33), 256, 128))


# ----------------------------------------------------------------------- the model side

RELEASED_ADAPTER = {  # control_adapter tensors of the released camera checkpoints (D = model width)
    "conv.weight": lambda d: (d, 24 * 8 * 8, 2, 2),
    "conv.bias": lambda d: (d,),
    "residual_blocks.0.conv1.weight": lambda d: (d, d, 3, 3),
    "residual_blocks.0.conv1.bias": lambda d: (d,),
    "residual_blocks.0.conv2.weight": lambda d: (d, d, 3, 3),
    "residual_blocks.0.conv2.bias": lambda d: (d,),
}


@pytest.mark.parametrize("variant", sorted(v for v in RELEASED if "camera" in v))
def test_adapter_shapes_equal_the_released_ones(variant):
    config = released_config(variant)
    model = WanDiT(config, device="meta")
    adapter = {
        k[len("control_adapter.") :]: tuple(v.shape) for k, v in model.state_dict().items() if "control_adapter" in k
    }
    assert adapter == {k: f(config.dim) for k, f in RELEASED_ADAPTER.items()}
    assert config.in_dim == (32 if variant.startswith("wan2.1") else 36)
    assert config_from_shapes({k: tuple(v.shape) for k, v in model.state_dict().items()}) == config


@pytest.mark.parametrize(
    "kind,family,extra", [("wan2.1-fun-camera", "wan2.1", 16), ("wan2.2-fun-camera", "wan2.2", 20)]
)
def test_camera_checkpoints_load_and_report_their_variant(kind, family, extra):
    sd = tiny_dit_state_dict(kind)
    dit = wan_core.load_dit(sd, device="cpu", dtype="fp32")
    assert dit.config.variant == f"{family}-fun-camera" and dit.config.task == "fun-camera"
    assert dit.config.extra_channels == extra and dit.config.has_image_embedding == (family == "wan2.1")
    x = torch.randn(1, 16, 3, 4, 4)
    y = torch.randn(1, extra, 3, 4, 4)
    ctx = [torch.randn(5, 64)]
    cam = torch.randn(1, 24, 3, 32, 32)
    plain = dit(x, torch.tensor([700.0]), ctx, y=y)
    moved = dit(x, torch.tensor([700.0]), ctx, y=y, camera=cam)
    assert plain.shape == moved.shape == x.shape and not torch.allclose(plain, moved)
    with pytest.raises(ConditioningError, match="24, T, H, W"):
        dit(x, torch.tensor([700.0]), ctx, y=y, camera=cam[:, :6])
    t2v = wan_core.load_dit(tiny_dit_state_dict("wan2.1-t2v"), device="cpu", dtype="fp32")
    with pytest.raises(ConditioningError, match="no camera adapter"):
        t2v(x, torch.tensor([700.0]), ctx, camera=cam)
