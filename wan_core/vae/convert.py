"""diffusers ``AutoencoderKLWan`` key names -> official Wan VAE names (WAN_SPEC.md 4.4).

Works for both layouts: Wan2.1 (flat ``encoder.down_blocks.N``) and Wan2.2
(``down_blocks.X.resnets.Y`` / ``downsampler``, ``up_blocks.X.upsampler``).
The decoder regrouping depends on the number of residual blocks per up block,
which is counted from the keys, not assumed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

# Parts of a diffusers WanResidualBlock -> index in the official ``residual`` Sequential.
RESNET_PARTS = {
    "norm1": "residual.0",
    "conv1": "residual.2",
    "norm2": "residual.3",
    "conv2": "residual.6",
    "conv_shortcut": "shortcut",
}
TOP_LEVEL = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
ENDS = {"conv_in": "conv1", "norm_out": "head.0", "conv_out": "head.2"}
MIDDLE = {"resnets.0": "middle.0", "attentions.0": "middle.1", "resnets.1": "middle.2"}


def is_diffusers_layout(keys: Iterable[str]) -> bool:
    return any(k.startswith(("decoder.conv_in.", "encoder.conv_in.", "decoder.up_blocks.")) for k in keys)


def _resnet(rest: str) -> str:
    """``norm1.gamma`` -> ``residual.0.gamma`` (resample / time_conv parts pass through)."""
    part, _, leaf = rest.partition(".")
    return f"{RESNET_PARTS[part]}.{leaf}" if part in RESNET_PARTS else rest


def _count(keys: list[str], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {m.group(1) for k in keys if (m := rx.match(k))}
    return len(found)


def diffusers_renamer(keys: Iterable[str]) -> Callable[[str], str | None]:
    """A function mapping each diffusers key to its official name (None for unknown keys)."""
    keys = list(keys)
    wan22 = any(k.startswith("encoder.down_blocks.0.resnets.") for k in keys)
    enc_res = _count(keys, r"encoder\.down_blocks\.0\.resnets\.(\d+)\.")
    dec_res = _count(keys, r"decoder\.up_blocks\.0\.resnets\.(\d+)\.")

    def rename(key: str) -> str | None:
        top, _, rest = key.partition(".")
        if top in TOP_LEVEL:
            return f"{TOP_LEVEL[top]}.{rest}"
        if top not in ("encoder", "decoder"):
            return None
        part, _, leaf = rest.partition(".")
        if part in ENDS:
            return f"{top}.{ENDS[part]}.{leaf}"
        if part == "mid_block":
            return _middle(top, leaf)
        if part == "down_blocks":
            return _down(leaf, wan22, enc_res)
        if part == "up_blocks":
            return _up(leaf, wan22, dec_res)
        return None

    return rename


def _middle(top: str, rest: str) -> str | None:
    for prefix, official in MIDDLE.items():
        if rest.startswith(prefix + "."):
            leaf = rest[len(prefix) + 1 :]
            return f"{top}.{official}.{_resnet(leaf) if prefix.startswith('resnets') else leaf}"
    return None


def _down(rest: str, wan22: bool, num_res: int) -> str | None:
    index, _, rest = rest.partition(".")
    if not wan22:
        return f"encoder.downsamples.{index}.{_resnet(rest)}"
    part, _, rest = rest.partition(".")
    if part == "resnets":
        j, _, leaf = rest.partition(".")
        return f"encoder.downsamples.{index}.downsamples.{j}.{_resnet(leaf)}"
    if part == "downsampler":
        return f"encoder.downsamples.{index}.downsamples.{num_res}.{rest}"
    return None


def _up(rest: str, wan22: bool, num_res: int) -> str | None:
    index, _, rest = rest.partition(".")
    part, _, rest = rest.partition(".")
    if part == "resnets":
        j, _, leaf = rest.partition(".")
        slot = j
        leaf = _resnet(leaf)
    elif part in ("upsampler", "upsamplers"):
        slot = str(num_res)
        leaf = rest[2:] if part == "upsamplers" else rest  # drop the list index "0."
    else:
        return None
    if wan22:
        return f"decoder.upsamples.{index}.upsamples.{slot}.{leaf}"
    return f"decoder.upsamples.{int(index) * (num_res + 1) + int(slot)}.{leaf}"
