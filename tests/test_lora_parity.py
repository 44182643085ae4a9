"""LoRA on the real tiny Wan DiT: parity with diffusers' own LoRA conversion, formats, fp8, block swap.

peft is not installed, so diffusers' ``load_lora_weights`` cannot run. The reference
is built from diffusers' own converters in ``diffusers.loaders.lora_conversion_utils``
(``_convert_non_diffusers_wan_lora_to_diffusers`` for ``diffusion_model.`` files,
``_convert_musubi_wan_lora_to_diffusers`` for ``lora_unet_`` files): the converted
PEFT dict is merged as ``W + B @ A`` (and ``b + lora_B.bias``) into a diffusers
``WanTransformer3DModel`` by diffusers parameter name, and its output is compared
with our DiT carrying the original file (merged and at run time).
"""

import copy

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.loaders.lora_conversion_utils import (
    _convert_musubi_wan_lora_to_diffusers,
    _convert_non_diffusers_wan_lora_to_diffusers,
)

from tests.conftest import rel_err
from wan_core.dit.convert import official_to_diffusers
from wan_core.dit.loader import load_dit
from wan_core.dit.tiny import tiny_dit_config, tiny_dit_state_dict
from wan_core.errors import LoraError
from wan_core.fp8 import dequantize_state_dict, quantize_state_dict
from wan_core.lora import apply_lora, official_to_diffusers_path, remove_lora
from wan_core.lora.tiny import FORMATS, random_factors, tiny_lora_state_dict, write_format
from wan_core.ops import WanLinear

TOL = 1e-4
RANK = 4
LINEARS = (
    "self_attn.q",
    "self_attn.k",
    "self_attn.v",
    "self_attn.o",
    "cross_attn.q",
    "cross_attn.k",
    "cross_attn.v",
    "cross_attn.o",
    "ffn.0",
    "ffn.2",
)


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def base_sd():
    return tiny_dit_state_dict("wan2.1-t2v", seed=0)


@pytest.fixture(scope="module")
def dit(base_sd):
    return load_dit(base_sd, device="cpu")


@pytest.fixture(scope="module")
def inputs():
    cfg = tiny_dit_config("wan2.1-t2v")
    g = torch.Generator().manual_seed(11)
    context = torch.zeros(1, 512, cfg.text_dim)
    context[:, :7] = torch.randn(1, 7, cfg.text_dim, generator=g)
    return {"x": torch.randn(1, cfg.out_dim, 3, 4, 6, generator=g), "t": torch.tensor([731.0]), "context": context}


def cloned(sd):
    """diffusers' converters scale some input tensors in place (``*=``), so they get copies."""
    return {k: v.clone() for k, v in sd.items()}


def run_ours(model, inputs):
    return model(inputs["x"], inputs["t"], inputs["context"])


def run_diffusers(official_sd, peft_sd, inputs):
    """A diffusers WanTransformer3DModel holding ``official_sd`` with a converted PEFT LoRA merged by name."""
    cfg = tiny_dit_config("wan2.1-t2v")
    model = WanTransformer3DModel(
        patch_size=cfg.patch_size,
        num_attention_heads=cfg.num_heads,
        attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim,
        out_channels=cfg.out_dim,
        text_dim=cfg.text_dim,
        freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim,
        num_layers=cfg.num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        eps=1e-6,
    )
    model.load_state_dict(official_to_diffusers(official_sd), strict=True)
    params = dict(model.named_parameters())
    peft = {k.removeprefix("transformer."): v for k, v in peft_sd.items()}
    for key, a in peft.items():
        if key.endswith(".lora_A.weight"):
            module = key[: -len(".lora_A.weight")]
            b = peft[module + ".lora_B.weight"]
            params[module + ".weight"].data += b.float() @ a.float()  # diffusers' LoRA scale is 1 here
            if module + ".lora_B.bias" in peft:
                params[module + ".bias"].data += peft[module + ".lora_B.bias"].float()
    return model.eval()(inputs["x"], inputs["t"], inputs["context"], return_dict=False)[0]


def block_linear_shapes(official_sd):
    """``{blocks.N.<linear>: weight shape}`` for the block linears in LINEARS."""
    return {
        k[: -len(".weight")]: tuple(v.shape)
        for k, v in official_sd.items()
        if k.startswith("blocks.") and k.endswith(".weight") and k[:-7].split(".", 2)[2] in LINEARS
    }


def lightx2v_style_lora(official_sd, seed=5):
    """``diffusion_model.`` + lora_down/lora_up/alpha on every block linear, diff_b biases, a head diff."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, w in official_sd.items():
        if not (name.startswith("blocks.") and name.endswith(".weight")):
            continue
        path = name[: -len(".weight")]
        if path.split(".", 2)[2] not in LINEARS:
            continue
        key = "diffusion_model." + path
        sd[key + ".lora_down.weight"] = torch.randn(RANK, w.shape[1], generator=g) / w.shape[1] ** 0.5
        sd[key + ".lora_up.weight"] = torch.randn(w.shape[0], RANK, generator=g) * 0.2
        sd[key + ".alpha"] = torch.tensor(float(RANK * 2))  # scale 2
        sd[key + ".diff_b"] = torch.randn(w.shape[0], generator=g) * 0.05
    w = official_sd["time_projection.1.weight"]
    sd["diffusion_model.time_projection.1.lora_down.weight"] = torch.randn(RANK, w.shape[1], generator=g) * 0.05
    sd["diffusion_model.time_projection.1.lora_up.weight"] = torch.randn(w.shape[0], RANK, generator=g) * 0.05
    sd["diffusion_model.head.head.diff"] = torch.randn(*official_sd["head.head.weight"].shape, generator=g) * 0.02
    sd["diffusion_model.head.head.diff_b"] = torch.randn(official_sd["head.head.bias"].shape, generator=g) * 0.02
    return sd


@pytest.mark.parametrize("mode", ["merge", "runtime"])
def test_parity_with_diffusers_conversion_of_a_lightx2v_style_lora(dit, base_sd, inputs, mode):
    lora = lightx2v_style_lora(base_sd)
    want = run_diffusers(base_sd, _convert_non_diffusers_wan_lora_to_diffusers(cloned(lora)), inputs)
    model = copy.deepcopy(dit)
    report = apply_lora(model, lora, strength=1.0, mode=mode)
    n_pairs = sum(k.endswith(".lora_down.weight") for k in lora)
    n_diffs = sum(k.endswith((".diff", ".diff_b")) for k in lora)
    assert report.matched == n_pairs + n_diffs == 43
    assert not report.unmatched
    got = run_ours(model, inputs)
    assert rel_err(got, run_ours(dit, inputs)) > 1e-2
    err = rel_err(got, want)
    assert err <= TOL, f"{mode}: rel err {err:.2e}"


def test_parity_with_diffusers_musubi_conversion(dit, base_sd, inputs):
    shapes = block_linear_shapes(base_sd)
    lora = write_format(random_factors(shapes, RANK, seed=9), "kohya")
    want = run_diffusers(base_sd, _convert_musubi_wan_lora_to_diffusers(cloned(lora)), inputs)
    for mode in ("merge", "runtime"):
        model = copy.deepcopy(dit)
        apply_lora(model, lora, mode=mode)
        err = rel_err(run_ours(model, inputs), want)
        assert err <= TOL, f"{mode}: rel err {err:.2e}"


def test_one_lora_in_every_format_changes_the_dit_identically(dit, base_sd, inputs):
    """Done-criterion: one random LoRA in nine formats, merged and at run time, gives one output."""
    shapes = block_linear_shapes(base_sd)
    factors = random_factors(shapes, RANK, seed=4)
    reference = None
    base = run_ours(dit, inputs)
    for fmt in FORMATS:
        for mode in ("merge", "runtime"):
            model = copy.deepcopy(dit)
            rep = apply_lora(model, write_format(factors, fmt), strength=0.7, mode=mode)
            assert rep.matched == len(shapes) and not rep.unmatched, (fmt, mode)
            out = run_ours(model, inputs)
            if reference is None:
                reference = out
                assert rel_err(out, base) > 1e-2
            assert rel_err(out, reference) < 1e-5, (fmt, mode)


def test_fp8_dit_with_runtime_lora_and_block_swap(base_sd, inputs):
    fp8_sd = quantize_state_dict(base_sd, lambda name, t: name.startswith("blocks."))
    deq = dequantize_state_dict(fp8_sd)
    lora = lightx2v_style_lora(base_sd)
    want = run_diffusers(deq, _convert_non_diffusers_wan_lora_to_diffusers(cloned(lora)), inputs)
    model = load_dit(fp8_sd, device="cpu", block_swap=1)
    q = model.get_submodule("blocks.0.self_attn.q")
    assert isinstance(q, WanLinear) and q.weight.dtype == torch.float8_e4m3fn
    base = run_ours(model, inputs)
    rep = apply_lora(model, lora, mode="runtime")
    assert q.weight.dtype == torch.float8_e4m3fn and rep.runtime > 0
    err = rel_err(run_ours(model, inputs), want)
    assert err <= TOL, f"rel err {err:.2e}"
    rep.set_strength(0.0)
    assert rel_err(run_ours(model, inputs), run_diffusers(deq, {}, inputs)) <= TOL  # merged head diff follows
    remove_lora(model, rep)
    assert rel_err(run_ours(model, inputs), base) < 1e-6


def test_fp8_dit_merge_requantises(base_sd, inputs):
    fp8_sd = quantize_state_dict(base_sd, lambda name, t: name.startswith("blocks."))
    lora = lightx2v_style_lora(base_sd)
    model = load_dit(fp8_sd, device="cpu")
    apply_lora(model, lora, mode="merge")
    q = model.get_submodule("blocks.1.ffn.0")
    assert q.weight.dtype == torch.float8_e4m3fn
    want = run_diffusers(
        dequantize_state_dict(fp8_sd), _convert_non_diffusers_wan_lora_to_diffusers(cloned(lora)), inputs
    )
    err = rel_err(run_ours(model, inputs), want)
    assert err < 0.05, f"rel err {err:.2e} (fp8 re-quantisation only)"


def test_wan21_i2v_lora_on_wan22_i2v_expert_skips_image_layers():
    """A Wan2.1 I2V LoRA (k_img/v_img/norm_k_img/img_emb) on a Wan2.2 I2V expert, which has none of them."""
    i2v21 = tiny_dit_state_dict("wan2.1-i2v", seed=0)
    lora = tiny_lora_state_dict(i2v21, rank=RANK, seed=1, fmt="comfyui")
    for n in range(2):
        lora[f"diffusion_model.blocks.{n}.cross_attn.norm_k_img.diff"] = torch.randn(
            i2v21["blocks.0.norm3.weight"].shape
        )
    lora["diffusion_model.img_emb.proj.1.diff_b"] = torch.randn(i2v21["img_emb.proj.1.bias"].shape)
    model = load_dit(tiny_dit_state_dict("wan2.2-i2v", seed=0), device="cpu")
    rep = apply_lora(model, lora)
    assert rep.skipped_i2v == 2 * 2 + 2 + 1 and not rep.unmatched
    assert rep.matched == 2 * len(LINEARS)
    assert apply_lora(load_dit(i2v21, device="cpu"), lora).skipped_i2v == 0


def test_14b_style_lora_on_smaller_dit_names_key_and_shapes(dit):
    wide = tiny_lora_state_dict({"dim": 512, "ffn_dim": 1024, "num_layers": 2}, rank=RANK, fmt="kohya")
    model = copy.deepcopy(dit)
    with pytest.raises(LoraError) as info:
        apply_lora(model, wide)
    msg = str(info.value)
    key = msg.split("'")[1]
    assert key in wide and "(512, 512)" in msg and "(256, 256)" in msg, msg
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), dit.state_dict().values()))


def test_vace_blocks_and_block_filter_on_the_real_dit():
    sd = tiny_dit_state_dict("wan2.1-vace", seed=0)
    model = load_dit(sd, device="cpu")
    lora = {}
    for name in (
        "blocks.0.self_attn.q",
        "blocks.1.self_attn.q",
        "vace_blocks.0.after_proj",
        "vace_blocks.0.before_proj",
    ):
        w = sd[name + ".weight"]
        lora[f"transformer.{official_to_diffusers_path(name)}.lora_A.weight"] = torch.randn(RANK, w.shape[1])
        lora[f"transformer.{official_to_diffusers_path(name)}.lora_B.weight"] = torch.randn(w.shape[0], RANK)
    assert "transformer.vace_blocks.0.proj_in.lora_A.weight" in lora
    rep = apply_lora(model, lora, blocks=[1])
    assert rep.matched == 3 and rep.filtered == 1 and not rep.unmatched
    assert torch.equal(model.get_parameter("blocks.0.self_attn.q.weight"), sd["blocks.0.self_attn.q.weight"])
    assert not torch.equal(
        model.get_parameter("vace_blocks.0.before_proj.weight"), sd["vace_blocks.0.before_proj.weight"]
    )


def test_parity_with_diffusers_for_a_peft_format_lora(dit, base_sd, inputs):
    """``transformer.blocks.N.attn1.to_q.lora_A.weight`` files load into diffusers without conversion."""
    shapes = block_linear_shapes(base_sd)
    lora = write_format(random_factors(shapes, RANK, seed=12), "diffusers")
    g = torch.Generator().manual_seed(13)
    for key in [k for k in lora if k.endswith(".lora_B.weight")][::3]:
        lora[key.replace(".lora_B.weight", ".lora_B.bias")] = torch.randn(lora[key].shape[0], generator=g) * 0.1
    assert "transformer.blocks.0.attn2.to_out.0.lora_A.weight" in lora
    assert "transformer.blocks.1.ffn.net.0.proj.lora_B.weight" in lora
    want = run_diffusers(base_sd, cloned(lora), inputs)
    for mode in ("merge", "runtime"):
        model = copy.deepcopy(dit)
        rep = apply_lora(model, lora, mode=mode)
        assert rep.matched == len(shapes) and not rep.unmatched
        err = rel_err(run_ours(model, inputs), want)
        assert err <= TOL, f"{mode}: rel err {err:.2e}"
