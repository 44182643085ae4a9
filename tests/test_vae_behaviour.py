"""VAE behaviour beyond parity: tiling, memory, validation, hooks, loader errors, dtypes."""

from __future__ import annotations

import logging
import weakref

import pytest
import torch
from conftest import rel_err
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import wan_core
from wan_core.errors import CheckpointError, InputError, WanInterrupted
from wan_core.progress import RunHooks
from wan_core.vae import TileOptions, WanVAE
from wan_core.vae.tiling import TileGrid, run_tiled, tile_spans
from wan_core.vae.tiny import tiny_vae_state_dict


@pytest.fixture(scope="module")
def vaes():
    return {v: wan_core.load_vae(tiny_vae_state_dict(v), device="cpu", dtype=torch.float32) for v in ("2.1", "2.2")}


def _video(frames: int, h: int, w: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, frames, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------------------------------------------------------------------------------------
# Tiling
# ---------------------------------------------------------------------------------------


def test_tile_spans_cover_with_overlap():
    assert tile_spans(5, 8, 2) == [(0, 5)]
    spans = tile_spans(10, 4, 1)
    assert spans[0] == (0, 4) and spans[-1] == (6, 10)
    assert all(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # consecutive tiles overlap


def test_blending_is_exact_for_a_local_function():
    """A position-wise 'decoder' (nearest x8 upsampling) must come out of the tiler unchanged."""
    src = torch.randn(1, 2, 3, 7, 9)

    def chunks(region):
        for t in range(region.shape[2]):
            yield t, region[:, :, t : t + 1].repeat_interleave(8, 3).repeat_interleave(8, 4)

    want = src.repeat_interleave(8, 3).repeat_interleave(8, 4)
    grid = TileGrid.build(7, 9, TileOptions(24, 8), 8, in_scale=1, out_scale=8)
    assert grid.count > 1
    got = run_tiled(chunks, src, torch.empty_like(want), grid, RunHooks(), steps_per_tile=3)
    assert rel_err(got, want) <= 1e-6


def _spatially_local(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep only the centre tap of every 3x3 spatial kernel and zero the attention output.

    The VAE then maps each latent position to its own stride x stride pixel block
    (and back), so tiles need no context from their neighbours.
    """
    out = {}
    for k, v in sd.items():
        v = v.clone()
        if v.dim() >= 4 and v.shape[-1] == 3 and v.shape[-2] == 3:
            centre = v[..., 1:2, 1:2].clone()
            v.zero_()
            v[..., 1:2, 1:2] = centre
        if k.endswith("middle.1.proj.weight") or k.endswith("middle.1.proj.bias"):
            v.zero_()
        out[k] = v
    return out


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_tiled_equals_untiled_for_a_local_vae(version):
    # Bound 1e-5: a spatially local VAE gives tiles all the context they need, so only fp rounding differs.
    vae = wan_core.load_vae(_spatially_local(tiny_vae_state_dict(version)), device="cpu", dtype=torch.float32)
    s = vae.config.spatial_stride
    video = _video(5, 4 * s, 5 * s)
    opts = TileOptions(3 * s, s)  # 2 x 2 tiles of 3 latent positions, overlapping by 1
    z = vae.encode(video)
    assert rel_err(vae.encode(video, tiling=opts), z) <= 1e-5
    assert rel_err(vae.decode(z, tiling=opts), vae.decode(z)) <= 1e-5


def test_tiled_full_vae_single_tile_is_exact_and_multi_tile_is_close(vaes):
    vae = vaes["2.1"]
    video = _video(5, 32, 32)
    z = vae.encode(video)
    assert torch.equal(vae.encode(video, tiling=TileOptions(512, 64)), z)
    x = vae.decode(z)
    assert torch.equal(vae.decode(z, tiling=TileOptions(512, 64)), x)
    # Bound 0.75: random weights see the whole 32x32 frame (no learned locality), so 24 px tiles
    # with 8 px overlap change seams by O(1); this only guards against misplaced or unweighted tiles.
    tiled = vae.decode(z, tiling=TileOptions(24, 8))
    assert tiled.shape == x.shape and float(tiled.abs().max()) <= 1.0
    assert rel_err(tiled, x) <= 0.75


def test_out_of_memory_falls_back_to_tiles(vaes, monkeypatch, caplog):
    vae = vaes["2.1"]
    z = torch.randn(1, 16, 2, 2, 2)
    want = vae.decode(z, tiling=TileOptions(256, 64))
    original = WanVAE._decode
    tried = []

    def flaky(self, z, opts, hooks):
        tried.append(opts)
        if opts is None:
            raise torch.OutOfMemoryError("simulated")
        return original(self, z, opts, hooks)

    monkeypatch.setattr(WanVAE, "_decode", flaky)
    with caplog.at_level(logging.WARNING, logger="wan_core.vae.tiling"):
        got = vae.decode(z)
    assert tried == [None, TileOptions(256, 64)]
    assert torch.equal(got, want)
    assert "out of memory" in caplog.text and "256 px tiles" in caplog.text


# ---------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------


class LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of live storages created by tensor ops inside the ``with`` block.

    Every op output's storage is counted once when it first appears and released
    when the last Python tensor referring to it is garbage collected (weakref
    callbacks). Parameters and inputs created before the block are not counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.holders: dict[tuple[int, int], int] = {}
        self.refs: dict[int, weakref.ref] = {}
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key[0] == 0:
            return
        if key not in self.holders:
            self.holders[key] = 0
            self.current += key[1]
            self.peak = max(self.peak, self.current)
        self.holders[key] += 1
        ref = weakref.ref(t, lambda r, key=key: self._release(r, key))
        self.refs[id(ref)] = ref

    def _release(self, ref: weakref.ref, key: tuple[int, int]) -> None:
        self.refs.pop(id(ref), None)
        self.holders[key] -= 1
        if self.holders[key] == 0:
            del self.holders[key]
            self.current -= key[1]


def _decode_peak(vae: WanVAE, latent_frames: int) -> tuple[int, int]:
    z = torch.randn(1, vae.config.z_dim, latent_frames, 2, 2)
    with LiveTensorBytes() as meter:
        out = vae.decode(z)
    return meter.peak - out.numel() * out.element_size(), meter.current


def test_decode_peak_memory_does_not_grow_with_frames(vaes):
    """Decode 33 frames (9 latent) vs 9 frames (3 latent): peak of live intermediate tensors,
    output buffer excluded, must stay within 1.2x.

    Method: a TorchDispatchMode sees every aten op on CPU; each output storage is
    counted from creation until its last tensor dies (weakref), giving an exact
    live-bytes curve of everything the decode allocates. A list+cat decode, or caches
    that grow with time, would scale with the frame count and fail.
    """
    vae = vaes["2.1"]
    peak9, _ = _decode_peak(vae, 3)
    peak33, left = _decode_peak(vae, 9)
    out_bytes = 3 * 33 * 16 * 16 * 4
    assert left == out_bytes  # only the returned frames are still alive: nothing leaked
    assert peak33 <= 1.2 * peak9, (peak9, peak33)


# ---------------------------------------------------------------------------------------
# Validation, hooks, errors, dtypes
# ---------------------------------------------------------------------------------------


def test_bad_frame_counts_and_sizes_name_valid_values(vaes):
    with pytest.raises(InputError, match=r"got 4: use 1 or 5 frames"):
        vaes["2.1"].encode(_video(4, 16, 16))
    with pytest.raises(InputError, match=r"height that is a multiple of 8, got 20: use 16 or 24"):
        vaes["2.1"].encode(_video(5, 20, 16))
    with pytest.raises(InputError, match=r"width that is a multiple of 16, got 24: use 16 or 32"):
        vaes["2.2"].encode(_video(1, 32, 24))
    with pytest.raises(InputError, match=r"\[B, 3, F, H, W\]"):
        vaes["2.1"].encode(torch.rand(1, 16, 16, 3))
    with pytest.raises(InputError, match=r"48 channels \(Wan2.2\).*Wan2.1 VAE"):
        vaes["2.1"].decode(torch.randn(1, 48, 2, 2, 2))


def test_progress_and_interrupt(vaes):
    vae = vaes["2.1"]
    seen = []
    vae.encode(_video(9, 16, 16), hooks=RunHooks(progress=lambda s, t, p: seen.append((s, t))))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    calls = []
    hooks = RunHooks(progress=lambda s, t, p: calls.append(s), interrupted=lambda: len(calls) >= 2)
    with pytest.raises(WanInterrupted):
        vae.decode(torch.randn(1, 16, 4, 2, 2), hooks=hooks)
    assert calls == [1, 2]


def test_non_vae_dict_is_named(vaes):
    dit = {"blocks.0.self_attn.q.weight": torch.zeros(4, 4), "head.modulation": torch.zeros(1, 2, 4)}
    with pytest.raises(CheckpointError, match="Wan DiT"):
        wan_core.load_vae(dit)
    sd = tiny_vae_state_dict("2.1")
    del sd["decoder.middle.0.residual.2.weight"]
    with pytest.raises(CheckpointError, match="missing 1 tensors.*decoder.middle.0.residual.2.weight"):
        wan_core.load_vae(sd, device="cpu")


def test_vae_inside_a_whole_checkpoint_loads():
    sd = {"first_stage_model." + k: v for k, v in tiny_vae_state_dict("2.1").items()}
    sd.update({f"model.diffusion_model.blocks.{i}.self_attn.q.weight": torch.zeros(2, 2) for i in range(400)})
    vae = wan_core.load_vae(sd, device="cpu")
    assert vae.config.version == "2.1" and vae.config.base_dim == 16


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_and_stays_close_to_fp32(vaes, dtype):
    vae16 = wan_core.load_vae(tiny_vae_state_dict("2.2"), device="cpu", dtype=dtype)
    assert vae16.dtype == dtype and vae16.device.type == "cpu"
    video = _video(5, 32, 16)
    z16, z32 = vae16.encode(video), vaes["2.2"].encode(video)
    assert z16.dtype == torch.float32
    assert rel_err(z16, z32) <= 0.05  # bf16 keeps ~3 significant digits (fp16 ~4); errors compound over ~20 layers
    x16, x32 = vae16.decode(z32), vaes["2.2"].decode(z32)
    assert x16.dtype == torch.float32 and rel_err(x16, x32) <= 0.05
