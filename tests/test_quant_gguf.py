"""GGUF DiT checkpoints: files written with `gguf`'s own writer and quantisers, read by our reader.

Reference = the `gguf` package (GGUFReader + gguf.quants.dequantize) on the same file.
K-quants, which `gguf` cannot write, get hand-built blocks (known values, and random blocks).
"""

import gguf
import numpy as np
import pytest
import torch
from conftest import rel_err
from gguf import GGMLQuantizationType as GT
from quant_helpers import (
    FLOATS,
    GGUF_WRITABLE,
    K_QUANTS,
    block_linear_types,
    gguf_reference,
    random_k_blocks,
    write_gguf,
)
from test_dit_helpers import cached_tiny, make_inputs

import wan_core
from wan_core.checkpoints import open_checkpoint
from wan_core.dit.loader import detect_config
from wan_core.errors import CheckpointError
from wan_core.quant import ggml
from wan_core.quant.gguf_file import read_packed
from wan_core.quant.weight import QuantizedWeight

ALL_TYPES = (*GGUF_WRITABLE, *K_QUANTS)


@pytest.mark.parametrize("type_name", GGUF_WRITABLE + FLOATS)
def test_types_gguf_can_write_read_back_equal_to_gguf_dequantize(tmp_path, type_name):
    w = torch.randn(8, 96, generator=torch.Generator().manual_seed(3))
    path = write_gguf(tmp_path / "t.gguf", {"w": w}, {"w": type_name})
    want = gguf_reference(path)["w"].float()
    src = open_checkpoint(path)
    assert src.shape("w") == (8, 96)
    got = src["w"].float()
    assert torch.equal(got, want), f"{type_name}: max diff {(got - want).abs().max():.3g}"
    if type_name in GGUF_WRITABLE:  # the kept-packed path (the one the DiT uses) gives the same values
        info = src.info("w")
        packed = QuantizedWeight(read_packed(info), None, (8, 96), info.ggml_type)
        assert torch.equal(packed.dequantize(torch.float32), want)
        assert rel_err(got, w) < 0.2  # and it is a quantisation of w


def _k_block(type_name: str) -> tuple[np.ndarray, np.ndarray]:
    """One K-quant block with chosen fields, and the 256 values it stands for (from ggml's formulas)."""
    half = np.array([0.5], np.float16).view(np.uint8)
    quarter = np.array([0.25], np.float16).view(np.uint8)
    sub = np.arange(16) % 4 + 1  # per-16-weight (Q2/3/6_K) or per-32-weight (Q4/5_K) scale pattern
    if type_name == "Q2_K":  # scales byte = min << 4 | scale; every 2-bit q = 2
        b = np.zeros(84, np.uint8)
        b[0:16] = (1 << 4) | sub
        b[16:80] = 0b10101010
        b[80:82], b[82:84] = half, quarter
        return b, np.repeat(0.5 * sub * 2 - 0.25 * 1, 16)
    if type_name == "Q3_K":  # 6-bit scales 32 + sub (high 2 bits = 2 in bytes 8-11); q = 1 with hmask set
        b = np.zeros(110, np.uint8)
        b[0:32] = 0xFF
        b[32:96] = 0b01010101
        low = sub  # scale i: low nibble of byte i % 8 (shift 4 for i >= 8)
        b[96:104] = low[:8] | (low[8:] << 4)
        b[104:108] = 0b10101010  # high 2 bits of every scale = 2 -> +32
        b[108:110] = half
        return b, np.repeat(0.5 * sub * 1, 16)
    if type_name in ("Q4_K", "Q5_K"):  # 8 scales 1..4 and mins 2 (6-bit); q nibble 3 (+16 with qh set for Q5_K)
        scales, mins = sub[:8], np.full(8, 2)
        b = np.zeros(144 if type_name == "Q4_K" else 176, np.uint8)
        b[0:2], b[2:4] = half, quarter
        b[4:8], b[8:12] = scales[:4], mins[:4]
        b[12:16] = scales[4:] | (mins[4:] << 4)
        q = 3
        if type_name == "Q5_K":
            b[16:48] = 0xFF
            q += 16
        b[-128:] = 0x33
        return b, np.repeat(0.5 * scales * q - 0.25 * mins, 32)
    b = np.zeros(210, np.uint8)  # Q6_K: int8 scales -sub, 6-bit q = 0x25 (37) -> 37 - 32 = 5
    b[0:128] = 0x55
    b[128:192] = 0b10101010
    b[192:208] = (-sub).astype(np.int8).view(np.uint8)
    b[208:210] = half
    return b, np.repeat(0.5 * -sub * 5, 16)


@pytest.mark.parametrize("type_name", K_QUANTS)
def test_k_quant_blocks_with_known_values(type_name):
    block, want = _k_block(type_name)
    ours = ggml.dequantize(torch.from_numpy(block), type_name, (256,))
    assert np.array_equal(ours.numpy(), want.astype(np.float32)), f"{type_name}: {ours[:8]} vs {want[:8]}"
    assert np.array_equal(gguf.quants.dequantize(block[None], getattr(GT, type_name)).reshape(-1), ours.numpy())


@pytest.mark.parametrize("type_name", K_QUANTS)
def test_random_k_quant_blocks_in_a_file_equal_gguf_dequantize(tmp_path, type_name):
    rows, cols = 4, 512
    blocks = random_k_blocks(type_name, rows * cols // 256, np.random.default_rng(1), 0.01)
    path = tmp_path / "k.gguf"
    writer = gguf.GGUFWriter(str(path), "wan")
    writer.add_tensor("k", blocks.reshape(rows, -1), raw_dtype=getattr(GT, type_name))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    src = open_checkpoint(path)
    assert src.shape("k") == (rows, cols) and src.info("k").ggml_type == type_name
    want = gguf_reference(path)["k"]
    assert torch.equal(src["k"], want)
    assert torch.equal(ggml.dequantize(read_packed(src.info("k")), type_name, (rows, cols)), want)


def _tiny_gguf(tmp_path, variant="wan2.1-t2v", prefix=""):
    """The tiny DiT as a GGUF: block Linear weights cycle through every type, the 5-D conv stored 2-D
    with its torch shape in metadata, text embedding F16, head BF16, the rest F32."""
    sd = cached_tiny(variant)
    types = block_linear_types(sd, (*ALL_TYPES, *FLOATS))
    types.update({"text_embedding.0.weight": "F16", "text_embedding.2.weight": "F16", "head.head.weight": "BF16"})
    tensors = {prefix + k: v for k, v in sd.items()}
    path = write_gguf(
        tmp_path / f"{variant}.gguf",
        tensors,
        {prefix + k: t for k, t in types.items()},
        orig_shape={prefix + "patch_embedding.weight": tuple(sd["patch_embedding.weight"].shape)},
    )
    return path, types


@pytest.mark.parametrize("variant,prefix", [("wan2.1-t2v", ""), ("wan2.1-i2v", "model.diffusion_model.")])
def test_tiny_gguf_dit_forward_equals_the_dequantised_model(tmp_path, variant, prefix):
    path, types = _tiny_gguf(tmp_path, variant, prefix)
    reference = {k[len(prefix) :]: v for k, v in gguf_reference(path).items()}
    assert detect_config(path).variant == detect_config(cached_tiny(variant)).variant
    model = wan_core.load_dit(path, device="cpu")
    for name, type_name in types.items():
        layer = model.get_submodule(name[: -len(".weight")])
        if type_name in ALL_TYPES:  # kept packed in memory
            assert layer.ggml_type == type_name and layer.weight.dtype == torch.uint8
    assert model.patch_embedding.weight.shape == cached_tiny(variant)["patch_embedding.weight"].shape
    inputs = make_inputs(model.config)
    err = rel_err(model(**inputs), wan_core.load_dit(reference, device="cpu")(**inputs))
    print(f"{variant}: GGUF vs dequantised model rel err {err:.2e}")
    assert err <= 1e-6


def test_gguf_block_swap_moves_the_packed_bytes(tmp_path):
    """Swapped blocks keep their packed bytes on the offload device; the output is unchanged."""
    path, _ = _tiny_gguf(tmp_path)
    model = wan_core.load_dit(path, device="cpu")
    inputs = make_inputs(model.config)
    before = model(**inputs)
    q = model.blocks[0].self_attn.q
    packed, kind = q.weight.detach().clone(), q.ggml_type
    model.set_block_swap(1, "cpu")
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda m, a: seen.append(m.self_attn.q.weight.dtype))
    assert rel_err(model(**inputs), before) == 0.0 and seen == [torch.uint8]
    assert q.ggml_type == kind and torch.equal(q.weight, packed)
    model.to("meta")  # moving the model leaves the swapped block (packed) on the offload device
    assert q.weight.device.type == "cpu" and q.weight.dtype == torch.uint8
    assert model.blocks[1].self_attn.q.weight.is_meta


def test_malformed_gguf_files_raise_checkpoint_errors(tmp_path):
    path, _ = _tiny_gguf(tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="truncated"):
        wan_core.load_dit(truncated, device="cpu")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="Cannot read .* as GGUF"):
        wan_core.load_dit(garbage, device="cpu")
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(data[:40])
    with pytest.raises(CheckpointError, match="download it again"):
        open_checkpoint(header_only)


def test_unsupported_type_and_bad_shape_metadata(tmp_path):
    path = tmp_path / "tq.gguf"
    writer = gguf.GGUFWriter(str(path), "wan")
    writer.add_tensor("w", gguf.quants.quantize(np.zeros((2, 256), np.float32), GT.TQ2_0), raw_dtype=GT.TQ2_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match="TQ2_0, which is not supported.*Q4_K"):
        open_checkpoint(path)
    bad = write_gguf(tmp_path / "bad.gguf", {"w": torch.zeros(4, 8)}, {}, orig_shape={"w": (3, 8)})
    with pytest.raises(CheckpointError, match="32 elements but its recorded torch shape is"):
        open_checkpoint(bad)


def test_a_packed_weight_of_the_wrong_size_is_named(tmp_path):
    sd = dict(cached_tiny("wan2.1-t2v"))
    sd["blocks.1.self_attn.q.weight"] = torch.randn(256, 512)
    path = write_gguf(tmp_path / "mixed.gguf", sd, {"blocks.1.self_attn.q.weight": "Q8_0"})
    with pytest.raises(CheckpointError, match=r"blocks.1.self_attn.q.weight.*\(256, 512\).*mixes two model sizes"):
        wan_core.load_dit(path, device="cpu")


def test_a_gguf_of_another_model_names_what_it_is(tmp_path):
    path = write_gguf(tmp_path / "vae.gguf", {"decoder.conv_in.weight": torch.zeros(8, 4)}, {})
    with pytest.raises(CheckpointError, match="look like a Wan VAE"):
        wan_core.load_dit(path, device="cpu")
