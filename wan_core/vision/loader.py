"""``wan_core.load_clip_vision``: the CLIP-H image encoder used by Wan I2V / FLF2V / Fun / Animate."""

from __future__ import annotations

import logging

import torch

from ..checkpoints import CheckpointInput, open_checkpoint
from ..devices import compute_dtype_for, resolve_device, resolve_dtype
from ..fp8 import dequantizing_view, split_scales
from ..materialize import materialize
from ..tensor_source import TensorSource
from .clip import ClipVisionConfig, ClipVisionTower
from .clip_keys import to_official
from .preprocess import preprocess

log = logging.getLogger(__name__)


class ClipVision:
    """Images -> CLIP-H penultimate hidden states. ``config``: :class:`ClipVisionConfig`.

    ``device`` is where the model was loaded; it computes wherever it is when called.
    """

    def __init__(self, model: ClipVisionTower, device: torch.device, dtype: torch.dtype) -> None:
        self.model, self.device, self.dtype = model, device, dtype
        self.config: ClipVisionConfig = model.config

    def encode(self, images: torch.Tensor, crop: str = "none") -> torch.Tensor:
        """images [N, H, W, 3] float 0..1 -> float32 CPU [N, tokens, width] (tokens 257 for CLIP-H)."""
        device = self.model.patch_embedding.weight.device  # where the model is now (a host may move it)
        pixels = preprocess(images, self.config.image_size, crop, device, self.dtype)
        with torch.inference_mode():
            return self.model(pixels).float().cpu()

    def encode_first_last(self, first: torch.Tensor, last: torch.Tensor, crop: str = "none") -> torch.Tensor:
        """FLF2V: first and last frames [N, H, W, 3] -> [N, 2 * tokens, width] (514 tokens for CLIP-H)."""
        return torch.cat([self.encode(first, crop), self.encode(last, crop)], dim=1)


def load_clip_vision(
    path_or_state_dict: CheckpointInput | TensorSource,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
) -> ClipVision:
    """Load a CLIP vision tower (official open-clip ``.pth`` or ComfyUI/HF layout) to ``device``.

    ``dtype``: compute dtype (None: bf16 on accelerators, fp32 on CPU). Only the blocks
    that produce the penultimate hidden state are loaded.
    """
    src = to_official(open_checkpoint(path_or_state_dict))
    cfg = ClipVisionConfig.from_source(src)
    dev = resolve_device(device)
    compute = compute_dtype_for(resolve_dtype(dtype, dev), dev)  # fp8: CLIP-H is small enough to run dequantised
    last = f"transformer.{cfg.layers - 1}."
    model_keys, _ = split_scales(src.keys())  # fp8 (rare for CLIP) is dequantised; scales are dropped
    src = dequantizing_view(src, [k for k in src if k in model_keys and not k.startswith(last)])
    with torch.device("meta"):
        model = ClipVisionTower(cfg)
    log.info(
        "Loading CLIP vision (%s, width %d, %d layers) to %s as %s",
        src.description,
        cfg.width,
        cfg.layers,
        dev,
        compute,
    )
    materialize(model, src, device=dev, dtype_rule=lambda _n, _d: compute, what="the CLIP vision model")
    return ClipVision(model.eval().requires_grad_(False), dev, compute)
