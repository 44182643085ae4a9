"""Tiny random-weight umT5 encoders (with an embedded tokenizer) for tests and smoke runs.

The tokenizer is a small SentencePiece unigram model trained, deterministically, on a
built-in English corpus, with umT5's special ids (pad 0, ``</s>`` 1, ``<s>`` 2, unk 3).
It is stored in the state dict as ComfyUI does: a uint8 ``spiece_model`` tensor.
"""

from __future__ import annotations

import functools
import io
import os

import torch

from ..errors import InputError
from ..tiny_models import TINY, TinySizes

_CORPUS = (
    "A cat walks across a sunny garden and stops to look at the camera.",
    "The camera slowly pans over a quiet mountain lake at sunrise, mist rising from the water.",
    "A young woman in a red dress dances in the rain on a busy city street at night.",
    "Close-up of a steaming cup of coffee on a wooden table, soft morning light.",
    "An astronaut rides a horse on the surface of the moon, cinematic, highly detailed.",
    "Two dogs play with a ball on the beach while waves roll onto the sand.",
    "A timelapse of clouds moving over a green valley, with shadows sweeping the fields.",
    "A chef chops vegetables quickly in a bright kitchen; the knife flashes in the light.",
    "Aerial view of a winding river through an autumn forest with orange and yellow leaves.",
    "A small boat drifts on calm blue water under a clear sky, gentle ripples around it.",
    "Children run through a field of tall grass, laughing, in slow motion.",
    "A robot assembles a tiny car on a workbench, sparks flying, studio lighting.",
    "Snow falls softly on a quiet village street lined with warm glowing windows.",
    "A hummingbird hovers near a purple flower, its wings a blur, shallow depth of field.",
    "The old train crosses a stone bridge over a deep canyon, smoke trailing behind.",
    "A painter adds bright strokes of blue and gold to a large canvas in her studio.",
    "Fireworks burst over the harbor, reflected in the dark water, crowds cheering.",
    "A man in a grey coat reads a newspaper on a park bench as pigeons gather nearby.",
    "Waves crash against the rocky coast during a storm, spray flying into the wind.",
    "A close shot of raindrops sliding down a window, city lights blurred behind the glass.",
    "The dancer spins on the stage, her long white dress flowing, spotlight from above.",
    "A fox sneaks through the snowy forest at dawn, leaving small tracks behind it.",
    "Hot air balloons rise over a desert at sunrise, colorful against the pale sky.",
    "A bicycle rider speeds down a hill on a country road, trees rushing past.",
    "Blurry, low quality, static, overexposed, worst quality, jpeg artifacts, ugly, deformed.",
    "Bright colors, detailed texture, smooth motion, natural lighting, realistic, 4k video.",
    "The quick brown fox jumps over the lazy dog; numbers 0 1 2 3 4 5 6 7 8 9 and 2024.",
)
VOCAB_SIZE = 320


@functools.lru_cache(maxsize=1)
def tiny_spiece_model_bytes() -> bytes:
    """Serialized SentencePiece unigram model (same bytes on every call and every run)."""
    import sentencepiece as spm

    spm.set_random_generator_seed(0)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 4),
        model_writer=buf,
        vocab_size=VOCAB_SIZE,
        model_type="unigram",
        hard_vocab_limit=False,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    return buf.getvalue()


def spiece_tensor(model_bytes: bytes) -> torch.Tensor:
    """The uint8 tensor ComfyUI stores under ``spiece_model``."""
    return torch.frombuffer(bytearray(model_bytes), dtype=torch.uint8).clone()


def _official_tensors(sizes: TinySizes, vocab: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    d, inner, ff = sizes.text_dim, sizes.t5_heads * sizes.t5_d_kv, sizes.t5_d_ff

    def lin(out_f: int, in_f: int) -> torch.Tensor:
        return torch.randn(out_f, in_f, generator=gen) * in_f**-0.5

    def norm() -> torch.Tensor:
        return 1.0 + 0.1 * torch.randn(d, generator=gen)

    sd = {"token_embedding.weight": torch.randn(vocab, d, generator=gen)}
    for i in range(sizes.t5_layers):
        p = f"blocks.{i}."
        sd[p + "norm1.weight"] = norm()
        for name in ("q", "k", "v"):
            sd[p + f"attn.{name}.weight"] = lin(inner, d)
        sd[p + "attn.o.weight"] = lin(d, inner)
        sd[p + "pos_embedding.embedding.weight"] = 0.5 * torch.randn(32, sizes.t5_heads, generator=gen)
        sd[p + "norm2.weight"] = norm()
        sd[p + "ffn.gate.0.weight"] = lin(ff, d)
        sd[p + "ffn.fc1.weight"] = lin(ff, d)
        sd[p + "ffn.fc2.weight"] = lin(d, ff)
    sd["norm.weight"] = norm()
    return sd


def official_to_comfyui(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official umT5 names -> HF/ComfyUI names (the table of WAN_SPEC 5.3, read right to left)."""
    block_map = {
        "norm1.": "layer.0.layer_norm.",
        "attn.": "layer.0.SelfAttention.",
        "pos_embedding.embedding.": "layer.0.SelfAttention.relative_attention_bias.",
        "norm2.": "layer.1.layer_norm.",
        "ffn.gate.0.": "layer.1.DenseReluDense.wi_0.",
        "ffn.fc1.": "layer.1.DenseReluDense.wi_1.",
        "ffn.fc2.": "layer.1.DenseReluDense.wo.",
    }
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key == "token_embedding.weight":
            out["shared.weight"] = value
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        else:
            _, index, rest = key.split(".", 2)
            old = next(o for o in block_map if rest.startswith(o))
            out[f"encoder.block.{index}.{block_map[old]}{rest[len(old) :]}"] = value
    return out


def tiny_t5_state_dict(seed: int = 0, sizes: TinySizes = TINY, layout: str = "comfyui") -> dict[str, torch.Tensor]:
    """Random fp32 umT5 encoder at tiny sizes + ``spiece_model``; layout "comfyui" (HF names) or "official"."""
    model_bytes = tiny_spiece_model_bytes()
    import sentencepiece as spm

    vocab = spm.SentencePieceProcessor(model_proto=model_bytes).get_piece_size()
    sd = _official_tensors(sizes, vocab, torch.Generator().manual_seed(seed))
    if layout == "comfyui":
        sd = official_to_comfyui(sd)
    elif layout != "official":
        raise InputError(f"layout must be 'comfyui' or 'official', got {layout!r}")
    sd["spiece_model"] = spiece_tensor(model_bytes)
    return sd


def write_tiny_t5(path: str | os.PathLike, fp8_scaled: bool = False, seed: int = 0) -> None:
    """Write a tiny ComfyUI-layout umT5 file; ``fp8_scaled`` quantises the linear weights (scaled fp8)."""
    from safetensors.torch import save_file

    from ..fp8 import quantize_state_dict

    sd = tiny_t5_state_dict(seed=seed)
    if fp8_scaled:
        sd = quantize_state_dict(
            sd, lambda name, _t: name.startswith("encoder.block.") and "relative_attention_bias" not in name
        )
    save_file(sd, os.fspath(path))
