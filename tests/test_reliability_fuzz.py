"""Fuzzing (hypothesis): whatever a user or a damaged file feeds in, only a WanError comes out.

Targets: the checkpoint detector (random bytes, and well-formed safetensors headers with random Wan
key names, shapes and dtypes), the CLI's --size / --frames / --lora parsers, and the image loader
(random bytes, and real PNG/JPEG/TIFF files cut short or with flipped bytes). Examples are few and
small, so the module stays fast on a 2-core CPU.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from wan_core.cli_args import parse_frames, parse_lora, parse_size
from wan_core.dit.loader import detect_config
from wan_core.errors import InputError, WanError
from wan_core.images import load_image

FUZZ = settings(
    max_examples=int(os.environ.get("WAN_FUZZ_EXAMPLES", "40")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SCRATCH = Path(tempfile.mkdtemp(prefix="wan_fuzz_"))  # hypothesis re-runs a test body: no function fixtures
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)

DIT_KEYS = (
    "patch_embedding.weight",
    "head.modulation",
    "head.head.weight",
    "text_embedding.0.weight",
    "time_embedding.0.weight",
    "blocks.0.ffn.0.weight",
    "blocks.1.ffn.0.weight",
    "blocks.3.self_attn.q.weight",
    "img_emb.proj.0.weight",
    "img_emb.emb_pos",
    "vace_patch_embedding.weight",
    "vace_blocks.0.after_proj.weight",
    "ref_conv.weight",
    "scaled_fp8",
    "model.diffusion_model.head.modulation",
    "decoder.conv1.weight",
)
DTYPES = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "I64": 8, "U8": 1, "BOOL": 1, "F64": 8, "Q4": 1, "": 1}


def _safetensors(entries: list[tuple[str, str, list[int]]], meta: object = None, lie: int = 0) -> bytes:
    """A safetensors file whose header lists ``entries``; ``lie`` shifts one offset (a damaged header)."""
    header: dict[str, object] = {}
    offset = 0
    for key, dtype, shape in entries:
        size = DTYPES.get(dtype, 1)
        for d in shape:
            size *= max(d, 0)
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size + lie]}
        offset += size
    if meta is not None:
        header["__metadata__"] = meta
    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob + bytes(offset)


def _only_wan_errors(call) -> object:
    try:
        return call()
    except WanError:
        return None


entry = st.tuples(
    st.sampled_from(DIT_KEYS),
    st.sampled_from(list(DTYPES)),
    st.lists(st.integers(min_value=-1, max_value=6), min_size=0, max_size=5),
)


@FUZZ
@given(entries=st.lists(entry, max_size=12, unique_by=lambda e: e[0]), lie=st.sampled_from([0, 0, 0, 1, -3]))
def test_checkpoint_detector_on_random_headers(entries, lie):
    path = SCRATCH / "header.safetensors"
    path.write_bytes(_safetensors(entries, lie=lie))
    _only_wan_errors(lambda: detect_config(path))


@FUZZ
@given(data=st.binary(max_size=300))
def test_checkpoint_detector_on_random_bytes(data):
    for suffix in (".safetensors", ".pth"):
        path = SCRATCH / f"random{suffix}"
        path.write_bytes(data)
        _only_wan_errors(lambda p=path: detect_config(p))


@FUZZ
@given(meta=st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)))
def test_checkpoint_detector_on_odd_metadata_and_json(meta):
    path = SCRATCH / "meta.safetensors"
    path.write_bytes(_safetensors([("head.modulation", "F32", [1, 2, 256])], meta=meta))
    _only_wan_errors(lambda: detect_config(path))
    blob = json.dumps(meta).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob)  # a header that is not a JSON object
    _only_wan_errors(lambda: detect_config(path))


def test_detector_finds_a_real_layout_among_the_fuzz():
    """The harness can succeed too: a consistent tiny T2V header is detected (the fuzz is not all errors)."""
    from wan_core.dit.tiny import tiny_dit_state_dict

    sd = tiny_dit_state_dict("wan2.1-t2v")
    path = SCRATCH / "real.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    assert detect_config(path).task == "t2v"


@FUZZ
@given(text=st.text(max_size=24))
def test_size_parser(text):
    try:
        width, height = parse_size(text)
    except InputError:
        return
    assert isinstance(width, int) and isinstance(height, int)


@FUZZ
@given(text=st.one_of(st.text(max_size=12), st.integers().map(str), st.floats().map(str)))
def test_frames_parser(text):
    try:
        assert isinstance(parse_frames(text), int)
    except InputError:
        pass


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=30),
        st.tuples(st.sampled_from(["x", "lora", "/dev/null", ""]), st.lists(st.text(max_size=6), max_size=4)).map(
            lambda t: ":".join([t[0], *t[1]])
        ),
    )
)
def test_lora_parser(text):
    _only_wan_errors(lambda: parse_lora(text))


def _image_bytes(fmt: str, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((24, 16), 50).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


SAMPLES = [_image_bytes("PNG", "RGB"), _image_bytes("PNG", "I;16"), _image_bytes("JPEG", "RGB")]
SAMPLES += [_image_bytes("TIFF", "F"), _image_bytes("PNG", "P"), _image_bytes("GIF", "L")]


@FUZZ
@given(
    sample=st.sampled_from(range(len(SAMPLES))),
    cut=st.floats(min_value=0.0, max_value=1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=4),
)
def test_image_loader_on_damaged_files(sample, cut, flips):
    data = bytearray(SAMPLES[sample])
    for where, value in flips:
        data[int(where * (len(data) - 1))] = value
    data = bytes(data[: max(1, int(cut * len(data)))]) if cut < 1.0 else bytes(data)
    path = SCRATCH / "damaged.img"
    path.write_bytes(data)
    image = _only_wan_errors(lambda: load_image(path))
    if image is not None:
        assert image.ndim == 4 and image.shape[-1] == 3 and torch.isfinite(image).all()
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0


@FUZZ
@given(data=st.binary(max_size=200))
def test_image_loader_on_random_bytes(data):
    path = SCRATCH / "random.png"
    path.write_bytes(data)
    _only_wan_errors(lambda: load_image(path))


@pytest.mark.parametrize("sample", range(len(SAMPLES)))
def test_undamaged_samples_load(sample):
    path = SCRATCH / f"sample{sample}"
    path.write_bytes(SAMPLES[sample])
    assert load_image(path).shape[1:] == (16, 24, 3)
