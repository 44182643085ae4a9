"""``load_dit``: any Wan DiT checkpoint layout -> :class:`WanDiT` (eval, no grad).

Accepted inputs (via :func:`wan_core.checkpoints.open_checkpoint`): a file, a list of
shards, an HF-style folder (config.json + index + shards) or a state dict. Layouts:
official names, ComfyUI repacks (``model.diffusion_model.`` prefix), diffusers names
(``WanTransformer3DModel`` / ``WanVACETransformer3DModel``), ComfyUI "scaled fp8"
(``scaled_fp8`` marker + ``.scale_weight``) and plain fp8 weights. The variant is
detected from keys and shapes only.

Memory: the model is built on the meta device and filled one tensor at a time, so
a bf16 file loaded as bf16 never exists twice in RAM.

dtype policy (``dtype`` = weight storage of the Linear layers; the compute dtype follows
:func:`wan_core.devices.compute_dtype_for`):

* ``dtype=None``: Linear weights stored in bf16/fp16/fp8 stay as stored (fp32 ones are
  cast to the compute dtype); compute dtype = ``resolve_dtype(None, device)``
  (bf16 on GPUs, fp32 on CPU).
* ``dtype`` bf16/fp16/fp32: Linear weights are cast to it (fp8 weights stay fp8) and
  it is also the compute dtype.
* ``dtype`` fp8 (e4m3fn/e5m2): Linear weights in blocks are stored as plain fp8
  (scale 1); compute dtype = ``resolve_dtype(None, device)``.
* ``dtype`` int8: Linear weights in blocks are quantised at load to int8 with
  per-output-channel scales (from bf16/fp16/fp8 files); compute dtype as for fp8.

GGUF files (``.gguf``): block-quantised Linear weights (Q8_0, Q4_K, ...) stay packed
and are dequantised per layer at compute time, whatever ``dtype`` says; their F32/F16
tensors follow the rules above. Every stored format is one
:class:`~wan_core.quant.weight.QuantizedWeight` behind ``WanLinear``.

Norm weights, modulations and ``emb_pos`` are always fp32 (tiny, and the spec computes
there in fp32); convolutions use the compute dtype.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from ..checkpoints import SCALED_FP8_MARKER, CheckpointInput, open_checkpoint, scaled_fp8_dtype, strip_known_prefix
from ..devices import compute_dtype_for, is_fp8, is_storage_dtype, resolve_device, resolve_dtype
from ..errors import CheckpointError, preview_keys
from ..fp8 import attach_scales, split_scales
from ..materialize import materialize
from ..ops import WanLinear
from ..quant.loading import fill_quantized_linears
from ..tensor_source import TensorSource
from .config import DiTConfig, config_from_shapes
from .convert import diffusers_to_official_name, is_diffusers_layout
from .model import WanDiT

log = logging.getLogger(__name__)

FP32_PARAM_SUFFIXES = ("modulation", "emb_pos")


def official_source(source: CheckpointInput | TensorSource) -> TensorSource:
    """Open ``source`` and present it with official tensor names (prefix stripped, diffusers renamed)."""
    # keep only the DiT's tensors of an all-in-one file (+ a bare scaled_fp8 marker)
    src = strip_known_prefix(open_checkpoint(source), others=lambda k: k if k == SCALED_FP8_MARKER else None)
    if is_diffusers_layout(src.keys()):
        src = src.renamed(_official_name)
    return src


def _official_name(name: str) -> str | None:
    """diffusers -> official; unknown names are kept so they are reported as unexpected."""
    if name.endswith(".norm_added_q.weight"):
        return None
    return diffusers_to_official_name(name) or name


def detect_config(source: CheckpointInput | TensorSource) -> DiTConfig:
    """Detect the DiT config without reading tensor data (only names and shapes)."""
    src = official_source(source)
    model_keys, _ = split_scales(src.keys())
    return config_from_shapes({k: src.shape(k) for k in model_keys}, src.config)


def _linear_param_names(model: WanDiT) -> set[str]:
    names = set()
    for mod_name, module in model.named_modules():
        if isinstance(module, WanLinear):
            names.update(f"{mod_name}.{p}" for p in ("weight", "bias"))
    return names


def make_dtype_rule(
    model: WanDiT, dtype: torch.dtype | None, compute: torch.dtype
) -> Callable[[str, torch.dtype], torch.dtype]:
    """Per-tensor storage dtype following the module docstring's policy."""
    linear = _linear_param_names(model)
    storage = dtype if dtype is not None and is_storage_dtype(dtype) else None  # fp8 / int8 (int8 blocks: filled)

    def rule(name: str, stored: torch.dtype) -> torch.dtype:
        if name not in linear:
            if name.endswith(FP32_PARAM_SUFFIXES) or ".norm" in name or name.startswith("img_emb.proj."):
                return torch.float32
            return compute
        if is_fp8(stored):
            return stored
        if storage is not None:
            return storage if name.startswith("blocks.") and name.endswith(".weight") else compute
        if dtype is not None:
            return dtype
        return stored if stored in (torch.float16, torch.bfloat16) else compute

    return rule


def check_scales_used(model: WanDiT, scale_keys: set[str]) -> None:
    """Every ``.scale_weight`` must belong to a Linear; a scale we would ignore means wrong weights."""
    linear = {f"{name}.scale_weight" for name, m in model.named_modules() if isinstance(m, WanLinear)}
    stray = {k for k in scale_keys if k.endswith(".scale_weight")} - linear
    if stray:
        raise CheckpointError(
            f"The fp8 file has scales for tensors that are not Linear weights ({preview_keys(stray)}); "
            "this quantisation layout is not supported. Use a bf16/fp16 file or ComfyUI's scaled-fp8 export."
        )


def load_dit(
    source: CheckpointInput | TensorSource,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    attention: str = "auto",
    block_swap: int = 0,
    offload_device: torch.device | str = "cpu",
    fast_8bit: bool = False,
    storage_device: torch.device | str | None = None,
) -> WanDiT:
    """Load a Wan DiT from any supported layout (see the module docstring) for ``device``.

    ``attention``: a backend of :mod:`wan_core.dit.attention` ("auto", "sdpa", "flash_attn", "fp8", ...;
    missing kernels raise BackendUnavailableError). ``block_swap``: number of blocks to keep on ``offload_device``.
    ``fast_8bit``: opt-in approximate 8-bit compute (see :meth:`WanDiT.set_fast_8bit`).
    ``storage_device``: where the weights are put (default ``device``), e.g. the CPU when a
    memory manager moves the model to ``device`` only when it runs; the dtypes follow ``device``.
    """
    dev = resolve_device(device)
    home = resolve_device(storage_device) if storage_device is not None else dev
    store = resolve_dtype(dtype, dev) if dtype is not None else None
    compute = compute_dtype_for(store, dev)
    src = official_source(source)
    model_keys, scale_keys = split_scales(src.keys())
    config = config_from_shapes({k: src.shape(k) for k in model_keys}, src.config)
    model = WanDiT(config, device="meta")
    filled = fill_quantized_linears(model, src.subset(model_keys | scale_keys), home, store)
    materialize(
        model,
        src.subset(model_keys - filled),
        device=home,
        dtype_rule=make_dtype_rule(model, store, compute),
        what=f"a {config.variant} DiT",
        optional=filled,
    )
    unused = {k[: -len("weight")] + "scale_weight" for k in filled}  # fp8 scales of weights now int8
    scaled = attach_scales(model, src.subset(scale_keys - unused), device=home) if scale_keys else 0
    check_scales_used(model, scale_keys)
    if scaled:
        log.info("Loaded %d fp8-scaled Linear layers (%s).", scaled, scaled_fp8_dtype(src))
    model.set_compute_dtype(compute)
    model.set_attention(attention)
    if fast_8bit:
        model.set_fast_8bit(True, run_on=dev)
    model.eval().requires_grad_(False)
    if block_swap:
        model.set_block_swap(block_swap, offload_device)
    log.info(
        "Loaded %s (%d layers, dim %d) on %s, compute %s.", config.variant, config.num_layers, config.dim, home, compute
    )
    return model
