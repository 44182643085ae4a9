"""Cheap latent previews: a fixed linear map from normalised Wan latents to RGB.

The per-channel factors are the public ones ComfyUI's previewer uses for these latent spaces
(``comfy/latent_formats.py``, classes Wan21 and Wan22; read as data). They act on the
NORMALISED latent ((mu − mean)/std, the wan_core convention, which is also what ComfyUI's
sampler previews). The result is in roughly [-1, 1] and is mapped to [0, 1].
"""

from __future__ import annotations

import torch

from ..errors import InputError

# [16 latent channels][R, G, B] for the Wan2.1 VAE (z16).
WAN21_RGB_FACTORS = (
    (-0.1299, -0.1692, 0.2932),
    (0.0671, 0.0406, 0.0442),
    (0.3568, 0.2548, 0.1747),
    (0.0372, 0.2344, 0.1420),
    (0.0313, 0.0189, -0.0328),
    (0.0296, -0.0956, -0.0665),
    (-0.3477, -0.4059, -0.2925),
    (0.0166, 0.1902, 0.1975),
    (-0.0412, 0.0267, -0.1364),
    (-0.1293, 0.0740, 0.1636),
    (0.0680, 0.3019, 0.1128),
    (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699),
    (0.0060, -0.0633, 0.0005),
    (0.3477, 0.2275, 0.2950),
    (0.1984, 0.0913, 0.1861),
)
WAN21_RGB_BIAS = (-0.1835, -0.0868, -0.3360)

# [48 latent channels][R, G, B] for the Wan2.2 VAE (z48).
WAN22_RGB_FACTORS = (
    (0.0119, 0.0103, 0.0046),
    (-0.1062, -0.0504, 0.0165),
    (0.0140, 0.0409, 0.0491),
    (-0.0813, -0.0677, 0.0607),
    (0.0656, 0.0851, 0.0808),
    (0.0264, 0.0463, 0.0912),
    (0.0295, 0.0326, 0.0590),
    (-0.0244, -0.0270, 0.0025),
    (0.0443, -0.0102, 0.0288),
    (-0.0465, -0.0090, -0.0205),
    (0.0359, 0.0236, 0.0082),
    (-0.0776, 0.0854, 0.1048),
    (0.0564, 0.0264, 0.0561),
    (0.0006, 0.0594, 0.0418),
    (-0.0319, -0.0542, -0.0637),
    (-0.0268, 0.0024, 0.0260),
    (0.0539, 0.0265, 0.0358),
    (-0.0359, -0.0312, -0.0287),
    (-0.0285, -0.1032, -0.1237),
    (0.1041, 0.0537, 0.0622),
    (-0.0086, -0.0374, -0.0051),
    (0.0390, 0.0670, 0.2863),
    (0.0069, 0.0144, 0.0082),
    (0.0006, -0.0167, 0.0079),
    (0.0313, -0.0574, -0.0232),
    (-0.1454, -0.0902, -0.0481),
    (0.0714, 0.0827, 0.0447),
    (-0.0304, -0.0574, -0.0196),
    (0.0401, 0.0384, 0.0204),
    (-0.0758, -0.0297, -0.0014),
    (0.0568, 0.1307, 0.1372),
    (-0.0055, -0.0310, -0.0380),
    (0.0239, -0.0305, 0.0325),
    (-0.0663, -0.0673, -0.0140),
    (-0.0416, -0.0047, -0.0023),
    (0.0166, 0.0112, -0.0093),
    (-0.0211, 0.0011, 0.0331),
    (0.1833, 0.1466, 0.2250),
    (-0.0368, 0.0370, 0.0295),
    (-0.3441, -0.3543, -0.2008),
    (-0.0479, -0.0489, -0.0420),
    (-0.0660, -0.0153, 0.0800),
    (-0.0101, 0.0068, 0.0156),
    (-0.0690, -0.0452, -0.0927),
    (-0.0145, 0.0041, 0.0015),
    (0.0421, 0.0451, 0.0373),
    (0.0504, -0.0483, -0.0356),
    (-0.0837, 0.0168, 0.0055),
)
WAN22_RGB_BIAS = (0.0317, -0.0878, -0.1388)

_TABLES = {16: (WAN21_RGB_FACTORS, WAN21_RGB_BIAS), 48: (WAN22_RGB_FACTORS, WAN22_RGB_BIAS)}
PREVIEW_CHANNELS = frozenset(_TABLES)


def rgb_factors(latent_channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(factors [C, 3], bias [3]) fp32 for a Wan latent space with C channels (16 or 48)."""
    if latent_channels not in _TABLES:
        raise InputError(
            f"No preview factors for a {latent_channels}-channel latent; Wan latents have 16 "
            "(Wan2.1 VAE) or 48 (Wan2.2 VAE) channels."
        )
    factors, bias = _TABLES[latent_channels]
    return torch.tensor(factors, dtype=torch.float32), torch.tensor(bias, dtype=torch.float32)


def latent_preview(latent: torch.Tensor, latent_channels: int | None = None, frame: int | None = None) -> torch.Tensor:
    """RGB preview [h, w, 3] fp32 in 0..1 (CPU) of one latent frame.

    ``latent``: normalised [C, T, h, w] or [B, C, T, h, w] (the first element is shown);
    ``frame``: latent frame index, None = the middle frame; ``latent_channels`` defaults to C
    (channels beyond it, e.g. concatenated conditioning, are ignored).
    """
    if latent.ndim == 5:
        latent = latent[0]
    if latent.ndim != 4:
        raise InputError(f"latent_preview expects [C, T, h, w] or [B, C, T, h, w]; got shape {tuple(latent.shape)}.")
    channels = int(latent_channels or latent.shape[0])
    factors, bias = rgb_factors(channels)
    index = latent.shape[1] // 2 if frame is None else int(frame)
    picked = latent[:channels, index].detach().to("cpu", torch.float32)  # [C, h, w]
    rgb = torch.einsum("chw,ck->hwk", picked, factors) + bias
    return ((rgb + 1.0) * 0.5).clamp(0.0, 1.0)
