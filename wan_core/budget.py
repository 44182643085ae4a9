"""Memory budgets: what a model run needs on the device, and how many DiT blocks to swap to fit.

A host with a memory manager (ComfyUI) asks two things before it lends device memory:
how large is the model (its stored bytes: fp8 / int8 / GGUF weights count what they
really hold) and how much more does one run need (activations for the latent shape).
The activation formulas are upper bounds of the live-tensor peak of one forward,
checked against a tensor-level probe in ``tests/test_memory_budget.py``; GPU kernels
(flash attention, the fused norms) stay below them.

:func:`plan_block_swap` turns the bytes a host grants into a number of swapped blocks,
so a model that does not fit still runs, streaming its first blocks per use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .devices import module_bytes
from .dit.config import DiTConfig
from .ops import WanLinear
from .text.t5 import T5Config
from .vae.config import VAEConfig
from .vision.clip import ClipVisionConfig

MARGIN = 1.10  # allocator rounding and fragmentation on top of the live-tensor peak
FP32 = 4
# Live bytes per (token x model width) of one DiT block, besides the fp32 residual stream:
# self-attention holds the modulated input, q, k, v / output in the compute dtype plus three
# fp32 temporaries of the q/k RMSNorm + RoPE; the FFN holds its input and output in the
# compute dtype and two [tokens, ffn_dim] tensors (hidden + GELU).
_ATTN_FP32_TEMPS = 3
_LOOP_LATENTS = 8  # x, velocity, guidance branches, solver history (UniPC) per sampled latent
# VAE: live bytes per output pixel of one 4-frame chunk, per compute-dtype byte, at the released
# decoder widths (Wan2.1: 96, Wan2.2: 256); scaled by the actual width for other files.
_VAE_CHUNK_BYTES_PER_PIXEL = {"2.1": (1380, 96), "2.2": (1460, 256)}  # measured op by op (tests)
_VAE_CHUNK_FRAMES = 4


def dtype_bytes(dtype: torch.dtype) -> int:
    return dtype.itemsize


def stored_bytes(module: nn.Module) -> int:
    """Bytes a module holds (parameters + buffers as stored: quantised weights count their packed bytes)."""
    return module_bytes(module)


def dit_tokens(config: DiTConfig, latent_shape: Sequence[int], reference_frame: bool = False) -> int:
    """Tokens of one sample: latent [.., T, h, w] patchified (+ one frame for a reference latent)."""
    t, h, w = (int(v) for v in latent_shape[-3:])
    pt, ph, pw = config.patch_size
    frames = math.ceil(t / pt) + (1 if reference_frame else 0)
    return frames * (h // ph) * (w // pw)


def dit_run_bytes(
    config: DiTConfig,
    latent_shape: Sequence[int],
    batch: int,
    compute_dtype: torch.dtype,
    dequantized_weights: bool = False,
) -> int:
    """Peak device bytes of one sampling step besides the weights.

    ``latent_shape``: [C, T, h, w] of one sample; ``batch``: samples per forward (doubled
    for batched classifier-free guidance); ``dequantized_weights``: fp8 / int8 / GGUF
    Linear weights are rebuilt in the compute dtype per layer (one transient copy).
    """
    c = dtype_bytes(compute_dtype)
    tokens = dit_tokens(config, latent_shape, reference_frame=config.has_ref_conv)
    width = tokens * config.dim * batch
    attention = FP32 + 4 * c + _ATTN_FP32_TEMPS * FP32
    ffn = FP32 + 2 * c + 2 * c * config.ffn_dim / config.dim
    hints = len(config.vace_layers) * c  # VACE hints wait in the compute dtype until their block
    context = batch * (config.text_len + (config.clip_tokens or 0)) * config.dim * (c + FP32)
    weights = 2 * config.dim * config.ffn_dim * c if dequantized_weights else 0
    latents = _LOOP_LATENTS * batch * math.prod(int(v) for v in latent_shape) * FP32
    return int((width * (max(attention, ffn) + hints) + context + weights + latents) * MARGIN)


def sampling_run_bytes(model: nn.Module, latent_shape: Sequence[int], batch: int, loras_bytes: int = 0) -> int:
    """:func:`dit_run_bytes` for a loaded DiT (its config, compute dtype and weight storage), plus LoRA factors."""
    compute = getattr(model, "dtype", torch.float32)
    rebuilt = any(isinstance(m, WanLinear) and m.weight.dtype != compute for m in model.modules())
    return dit_run_bytes(model.config, latent_shape, batch, compute, rebuilt) + loras_bytes  # type: ignore[arg-type]


def vae_run_bytes(
    config: VAEConfig,
    frames: int,
    height: int,
    width: int,
    dtype: torch.dtype,
    batch: int = 1,
    tile: int | None = None,
) -> int:
    """Peak device bytes of a VAE decode (or encode) of ``batch`` videos [frames, height, width].

    The model works one 4-frame chunk at a time (``tile`` px square tiles when tiled);
    the whole fp32 video is held on the device as well.
    """
    per_pixel, released_width = _VAE_CHUNK_BYTES_PER_PIXEL[config.version]
    pixels = min(tile, height) * min(tile, width) if tile else height * width
    chunk = batch * _VAE_CHUNK_FRAMES * pixels * per_pixel * dtype_bytes(dtype) * config.decoder_dim / released_width
    video = batch * 3 * frames * height * width * FP32
    return int((chunk + video) * MARGIN)


def vae_latent_run_bytes(config: VAEConfig, latent_shape: Sequence[int], dtype: torch.dtype, tile: int | None) -> int:
    """:func:`vae_run_bytes` for decoding a latent [B, z, T, h, w]."""
    b, _, t, h, w = (int(v) for v in latent_shape)
    s = config.spatial_stride
    return vae_run_bytes(config, (t - 1) * config.temporal_stride + 1, h * s, w * s, dtype, b, tile)


def text_run_bytes(config: T5Config, batch: int, tokens: int, dtype: torch.dtype) -> int:
    """Peak device bytes of a umT5 forward on ``batch`` prompts of ``tokens`` tokens."""
    c = dtype_bytes(dtype)
    # fp32 scores live ~5 times at once (logits, + bias and mask, softmax, its cast), plus the shared position bias
    scores = (5 * batch + 1) * config.heads * tokens * tokens * FP32
    hidden = batch * tokens * (4 * config.d_model * FP32 + 3 * config.d_ff * c)
    return int((scores + hidden) * MARGIN)


def clip_run_bytes(config: ClipVisionConfig, images: int, dtype: torch.dtype) -> int:
    """Peak device bytes of a CLIP vision forward on ``images`` images."""
    c = dtype_bytes(dtype)
    scores = 2 * images * config.heads * config.tokens**2 * FP32
    hidden = images * config.tokens * (4 * config.width * FP32 + 2 * config.mlp * c)
    pixels = images * 3 * config.image_size**2 * FP32
    return int((scores + hidden + pixels) * MARGIN)


# --------------------------------------------------------------------------- block swap


@dataclass(frozen=True)
class SwapPlan:
    """How a DiT fits a device budget: ``swapped`` of its main blocks stream in per use.

    ``resident``: bytes on the device between forwards (everything but the swapped blocks);
    ``in_flight``: bytes of the swapped blocks being used or prefetched during a forward.
    """

    swapped: int
    resident: int
    in_flight: int

    @property
    def peak(self) -> int:
        return self.resident + self.in_flight


# Swapped blocks on the device at once during a forward: the one computing and the prefetched next.
IN_FLIGHT_BLOCKS = 2


def plan_block_swap(fixed: int, blocks: Sequence[int], budget: float, override: int | None = None) -> SwapPlan:
    """The fewest swapped blocks (the first ones) such that the weights' peak fits ``budget``.

    ``fixed``: bytes that never swap (embeddings, head, VACE blocks); ``blocks``: bytes of each
    main block; ``override``: a user's block count, taken as given. When even every block
    swapped does not fit, all are swapped (the least the model can hold).
    """
    n = len(blocks)
    if override is not None:
        return _plan(fixed, blocks, max(0, min(override, n)))
    if fixed + sum(blocks) <= budget:
        return _plan(fixed, blocks, 0)
    for swapped in range(1, n + 1):
        plan = _plan(fixed, blocks, swapped)
        if plan.peak <= budget:
            return plan
    return _plan(fixed, blocks, n)


def _plan(fixed: int, blocks: Sequence[int], swapped: int) -> SwapPlan:
    in_flight = sum(sorted(blocks[:swapped], reverse=True)[:IN_FLIGHT_BLOCKS])
    return SwapPlan(swapped, fixed + sum(blocks[swapped:]), in_flight)


def dit_block_bytes(model: nn.Module) -> tuple[int, list[int]]:
    """(bytes outside the main blocks, bytes of each main block) of a DiT (``model.blocks``)."""
    blocks = [stored_bytes(b) for b in model.blocks]  # type: ignore[union-attr]
    return stored_bytes(model) - sum(blocks), blocks
