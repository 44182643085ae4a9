"""GGML block formats: sizes and torch dequantisers (the data stays packed until a layer runs).

Each block type packs ``block`` weights into ``nbytes`` bytes. The functions here take
the packed bytes of ``n`` blocks as a uint8 tensor [n, nbytes] (on any device) and
return the weights as float32 [n, block], in the element order of ggml's reference
``dequantize_row_*`` (so a row of a GGUF matrix is its blocks in order). The arithmetic
is float32 with the reference's operation order, so results equal ``gguf.quants``.

Layouts (little-endian; ``d``/``m``/``dmin`` are fp16):

* Q4_0 [d, qs16]  Q4_1 [d, m, qs16]  Q5_0 [d, qh4, qs16]  Q5_1 [d, m, qh4, qs16]  Q8_0 [d, qs32]
  (32 weights; nibble j -> weight j, high nibble -> j + 16; qh bit j is weight j's 5th bit)
* K-quants, 256 weights in 16-weight (Q2/3/6_K) or 32-weight (Q4/5_K) sub-blocks:
  Q2_K [scales16, qs64, d, dmin]  Q3_K [hmask32, qs64, scales12, d]  Q4_K [d, dmin, scales12, qs128]
  Q5_K [d, dmin, scales12, qh32, qs128]  Q6_K [ql128, qh64, scales16 (int8), d]
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

Dequantizer = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GgmlType:
    """One packed block format: ``block`` weights in ``nbytes`` bytes."""

    name: str
    block: int
    nbytes: int
    dequantize: Dequantizer


def _f16(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The fp16 field at byte ``start`` of every block, as float32 [n, 1]."""
    return blocks[:, start : start + 2].contiguous().view(torch.float16).float()


@functools.lru_cache(maxsize=64)
def _shift_table(bits: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The shift amounts as a [len, 1] uint8 tensor, made once per device (no copy per layer call)."""
    return torch.tensor(bits, dtype=torch.uint8, device=device).view(-1, 1)


def _shifts(values: torch.Tensor, bits: tuple[int, ...], mask: int) -> torch.Tensor:
    """``(values >> s) & mask`` for each s, stacked on a new dim before the last: [..., len(bits), k]."""
    return (values.unsqueeze(-2) >> _shift_table(bits, values.device)) & mask


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """[n, k] bytes -> [n, 2k]: all low nibbles, then all high nibbles."""
    return torch.cat([qs & 0x0F, qs >> 4], dim=-1)


def _bits32(qh: torch.Tensor) -> torch.Tensor:
    """[n, 4] bytes of a little-endian uint32 -> its 32 bits [n, 32] (bit j at index j)."""
    return _shifts(qh, tuple(range(8)), 1).transpose(-1, -2).reshape(qh.shape[0], 32)


def _q4_0(b: torch.Tensor) -> torch.Tensor:
    return _f16(b, 0) * (_nibbles(b[:, 2:18]).float() - 8)


def _q4_1(b: torch.Tensor) -> torch.Tensor:
    return _f16(b, 0) * _nibbles(b[:, 4:20]).float() + _f16(b, 2)


def _q5(b: torch.Tensor, qh_at: int) -> torch.Tensor:
    """The unsigned 5-bit values (0..31) of a Q5_0/Q5_1 block."""
    low = _nibbles(b[:, qh_at + 4 : qh_at + 20])
    return (low | (_bits32(b[:, qh_at : qh_at + 4]) << 4)).float()


def _q5_0(b: torch.Tensor) -> torch.Tensor:
    return _f16(b, 0) * (_q5(b, 2) - 16)


def _q5_1(b: torch.Tensor) -> torch.Tensor:
    return _f16(b, 0) * _q5(b, 4) + _f16(b, 2)


def _q8_0(b: torch.Tensor) -> torch.Tensor:
    return _f16(b, 0) * b[:, 2:34].contiguous().view(torch.int8).float()


def _two_bit(qs: torch.Tensor) -> torch.Tensor:
    """Q2_K/Q3_K low bits: qs [n, 64] -> [n, 256] (2 halves x 4 shifts x 32 bytes)."""
    return _shifts(qs.reshape(-1, 2, 32), (0, 2, 4, 6), 3).reshape(-1, 256)


def _per16(factors: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``factor * q`` with one factor per 16-weight sub-block: factors [n, 16], q [n, 256] -> [n, 256]."""
    return (factors.view(-1, 16, 1) * q.view(-1, 16, 16)).reshape(-1, 256)


def _q2_k(b: torch.Tensor) -> torch.Tensor:
    sc = b[:, 0:16]
    dl = _f16(b, 80) * (sc & 0x0F).float()
    ml = _f16(b, 82) * (sc >> 4).float()
    q = _two_bit(b[:, 16:80]).float().view(-1, 16, 16)
    return (dl.unsqueeze(-1) * q - ml.unsqueeze(-1)).reshape(-1, 256)


def _q3_k_scales(s: torch.Tensor) -> torch.Tensor:
    """12 bytes -> 16 signed 6-bit scales: low 4 bits from bytes 0-7, high 2 bits from bytes 8-11."""
    i = torch.arange(16, device=s.device)
    low = (s[:, i % 8] >> (4 * (i // 8)).to(torch.uint8)) & 0x0F
    high = (s[:, 8 + i % 4] >> (2 * (i // 4)).to(torch.uint8)) & 3
    return (low | (high << 4)).float() - 32


def _q3_k(b: torch.Tensor) -> torch.Tensor:
    dl = _f16(b, 108) * _q3_k_scales(b[:, 96:108])
    high = _shifts(b[:, 0:32], tuple(range(8)), 1).reshape(-1, 256)
    q = _two_bit(b[:, 32:96]).float() - torch.where(high.bool(), 0.0, 4.0)
    return (dl.unsqueeze(-1) * q.view(-1, 16, 16)).reshape(-1, 256)


def _k4_scales(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q4_K/Q5_K: 12 bytes -> 8 six-bit scales and 8 six-bit mins (ggml's get_scale_min_k4)."""
    lo, mid, top = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    scales = torch.cat([lo & 63, (top & 0x0F) | ((lo >> 6) << 4)], dim=-1)
    mins = torch.cat([mid & 63, (top >> 4) | ((mid >> 6) << 4)], dim=-1)
    return scales.float(), mins.float()


def _k4_apply(b: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``d * scale * q - dmin * min`` per 32-weight sub-block; q [n, 256] float."""
    scales, mins = _k4_scales(b[:, 4:16])
    d1 = (_f16(b, 0) * scales).unsqueeze(-1)
    m1 = (_f16(b, 2) * mins).unsqueeze(-1)
    return (d1 * q.view(-1, 8, 32) - m1).reshape(-1, 256)


def _k4_low(qs: torch.Tensor) -> torch.Tensor:
    """qs [n, 128] -> [n, 256]: per 32-byte chunk, its 32 low nibbles then its 32 high nibbles."""
    return _shifts(qs.reshape(-1, 4, 32), (0, 4), 0x0F).reshape(-1, 256)


def _q4_k(b: torch.Tensor) -> torch.Tensor:
    return _k4_apply(b, _k4_low(b[:, 16:144]).float())


def _q5_k(b: torch.Tensor) -> torch.Tensor:
    high = _shifts(b[:, 16:48], tuple(range(8)), 1).reshape(-1, 256)
    return _k4_apply(b, (_k4_low(b[:, 48:176]) | (high << 4)).float())


def _q6_k(b: torch.Tensor) -> torch.Tensor:
    ql = b[:, 0:128].reshape(-1, 2, 64)
    low = torch.cat([ql & 0x0F, ql >> 4], dim=-1)  # per half: [q1 q2 | q3 q4] low nibbles
    high = _shifts(b[:, 128:192].reshape(-1, 2, 32), (0, 2, 4, 6), 3).reshape(-1, 2, 128)
    q = (low | (high << 4)).float().reshape(-1, 256) - 32
    scales = b[:, 192:208].contiguous().view(torch.int8).float()
    return _per16(_f16(b, 208) * scales, q)


GGML_TYPES: dict[str, GgmlType] = {
    t.name: t
    for t in (
        GgmlType("Q4_0", 32, 18, _q4_0),
        GgmlType("Q4_1", 32, 20, _q4_1),
        GgmlType("Q5_0", 32, 22, _q5_0),
        GgmlType("Q5_1", 32, 24, _q5_1),
        GgmlType("Q8_0", 32, 34, _q8_0),
        GgmlType("Q2_K", 256, 84, _q2_k),
        GgmlType("Q3_K", 256, 110, _q3_k),
        GgmlType("Q4_K", 256, 144, _q4_k),
        GgmlType("Q5_K", 256, 176, _q5_k),
        GgmlType("Q6_K", 256, 210, _q6_k),
    )
}


def dequantize(
    data: torch.Tensor, type_name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Packed bytes (uint8, any shape, whole blocks) -> weights of ``shape`` in ``dtype``."""
    t = GGML_TYPES[type_name]
    blocks = data.reshape(-1, t.nbytes)
    return t.dequantize(blocks).reshape(shape).to(dtype)


def quantize_q8_0(w: torch.Tensor) -> torch.Tensor:
    """float weights (numel a multiple of 32) -> Q8_0 bytes [n_blocks, 34], in torch on w's device.

    Used to re-quantise a GGUF weight after a LoRA merge: same rounding rule as ggml
    (d = amax / 127 stored as fp16, q = round(x / d)), close to lossless.
    """
    x = w.float().reshape(-1, 32)
    d = x.abs().amax(dim=1, keepdim=True) / 127
    inv = torch.where(d == 0, torch.zeros_like(d), 1.0 / d)
    q = torch.round(x * inv).clamp(-127, 127).to(torch.int8)
    head = d.to(torch.float16).view(torch.uint8).reshape(-1, 2)
    return torch.cat([head, q.view(torch.uint8)], dim=1)
