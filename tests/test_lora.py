"""LoRA: key formats, merge math, run-time adapters, fp8, filters, errors (on a small stand-in model).

The stand-in uses WanLinear layers under the official Wan parameter names, so the
tests exercise exactly the names the real DiT has; diffusers parity on the real
tiny DiT is in test_lora_parity.py.
"""

import copy
import json
import math

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from tests.conftest import rel_err
from wan_core.errors import InputError, LoraError
from wan_core.fp8 import quantize_tensor
from wan_core.lora import LoraSpec, apply_lora, apply_lora_stack, load_lora, remove_lora
from wan_core.lora.tiny import FORMATS, tiny_lora_state_dict
from wan_core.ops import WanLinear

D, FF, L, RANK = 32, 48, 2, 4


def _lin(i, o):
    lin = WanLinear(i, o)
    nn.init.normal_(lin.weight, std=i**-0.5)
    nn.init.normal_(lin.bias, std=0.1)
    return lin


class Attn(nn.Module):
    def __init__(self, img=False):
        super().__init__()
        self.q, self.k, self.v, self.o = (_lin(D, D) for _ in range(4))
        self.norm_q = nn.RMSNorm(D)
        self.norm_k = nn.RMSNorm(D)
        if img:
            self.k_img, self.v_img = _lin(D, D), _lin(D, D)
            self.norm_k_img = nn.RMSNorm(D)


class Block(nn.Module):
    def __init__(self, img=False):
        super().__init__()
        self.self_attn = Attn()
        self.norm3 = nn.LayerNorm(D)
        self.cross_attn = Attn(img)
        self.ffn = nn.Sequential(_lin(D, FF), nn.GELU(approximate="tanh"), _lin(FF, D))
        self.modulation = nn.Parameter(torch.randn(1, 6, D) * 0.1)

    def forward(self, h, ctx):
        m = self.modulation
        sa = self.self_attn
        a = sa.q(sa.norm_q(h)) * torch.sigmoid(sa.k(sa.norm_k(h))) + sa.v(h)
        h = h + sa.o(a) * (1 + m[:, 0])
        ca = self.cross_attn
        c = ca.q(self.norm3(h)) + ca.k(ctx).mean(1, keepdim=True) + ca.v(ctx).mean(1, keepdim=True)
        h = h + ca.o(c) * (1 + m[:, 1])
        return h + self.ffn(h) * (1 + m[:, 2])


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = _lin(D, 8)
        self.modulation = nn.Parameter(torch.randn(1, 2, D) * 0.1)


class StandIn(nn.Module):
    """Official Wan parameter names (blocks.N.self_attn.q, ffn.0, modulation, head.head, ...)."""

    def __init__(self, img=False):
        super().__init__()
        self.blocks = nn.ModuleList(Block(img) for _ in range(L))
        self.head = Head()
        self.time_projection = nn.Sequential(nn.SiLU(), _lin(D, 6 * D))

    def forward(self, x, ctx):
        h = x + self.time_projection(x)[..., :D]
        for block in self.blocks:
            h = block(h, ctx)
        return self.head.head(h * (1 + self.head.modulation[:, 0]))


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
DIFFUSERS = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return StandIn()


@pytest.fixture(scope="module")
def factors(model):
    """One random low-rank ΔW per linear: ΔW = 0.5 · up @ down (alpha = r / 2)."""
    g = torch.Generator().manual_seed(7)
    out = {}
    for n in range(L):
        for lin in LINEARS:
            w = model.get_parameter(f"blocks.{n}.{lin}.weight")
            out[(n, lin)] = (
                torch.randn(RANK, w.shape[1], generator=g) * 0.2,
                torch.randn(w.shape[0], RANK, generator=g) * 0.2,
            )
    return out


def write(factors, fmt):
    """The same ΔW written by hand in one of the formats of WAN_SPEC section 9.1."""
    sd = {}
    for (n, lin), (down, up) in factors.items():
        off = f"blocks.{n}.{lin}"
        kohya = off.replace(".", "_")
        if fmt == "official_ab":
            sd[f"{off}.lora_A.weight"], sd[f"{off}.lora_B.weight"] = down, up * 0.5
        elif fmt == "comfyui_alpha":
            sd[f"diffusion_model.{off}.lora_down.weight"], sd[f"diffusion_model.{off}.lora_up.weight"] = down, up
            sd[f"diffusion_model.{off}.alpha"] = torch.tensor(RANK / 2)
        elif fmt in ("kohya", "videox_fun", "lycoris"):
            pre = {"kohya": "lora_unet_", "videox_fun": "lora_unet__", "lycoris": "lycoris_"}[fmt]
            sd[f"{pre}{kohya}.lora_down.weight"], sd[f"{pre}{kohya}.lora_up.weight"] = down, up
            sd[f"{pre}{kohya}.alpha"] = torch.tensor(float(RANK // 2))
        elif fmt == "diffusers":
            dn = f"transformer.blocks.{n}.{DIFFUSERS[lin]}"
            sd[f"{dn}.lora_A.weight"], sd[f"{dn}.lora_B.weight"] = down, up * 0.5
        elif fmt == "peft_rslora":  # scale = lora_alpha / sqrt(r) = 1 / 2 from the metadata
            sd[f"base_model.model.{off}.lora_A.weight"], sd[f"base_model.model.{off}.lora_B.weight"] = down, up
        elif fmt == "pipe_dit":
            sd[f"pipe.dit.{off}.lora_A.default.weight"], sd[f"pipe.dit.{off}.lora_B.default.weight"] = down, up * 0.5
        else:
            raise AssertionError(fmt)
    return sd


HAND_FORMATS = (
    "official_ab",
    "comfyui_alpha",
    "kohya",
    "videox_fun",
    "diffusers",
    "peft_rslora",
    "pipe_dit",
    "lycoris",
)


def expected_merged(model, factors, strength=1.0):
    out = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for (n, lin), (down, up) in factors.items():
        out[f"blocks.{n}.{lin}.weight"] += strength * 0.5 * (up @ down)
    return out


def _lora_file(tmp_path, fmt, factors):
    sd = write(factors, fmt)
    path = tmp_path / f"{fmt}.safetensors"
    meta = {"format": "pt"}
    if fmt == "peft_rslora":
        meta["lora_adapter_metadata"] = json.dumps({"r": RANK, "lora_alpha": 1.0, "use_rslora": True})
    save_file(sd, str(path), metadata=meta)
    return path


def test_eight_formats_give_identical_merged_weights(model, factors, tmp_path):
    want = expected_merged(model, factors)
    results = {}
    for fmt in HAND_FORMATS:
        m = copy.deepcopy(model)
        report = apply_lora(m, _lora_file(tmp_path, fmt, factors), mode="merge")
        assert report.matched == len(factors) and not report.unmatched, fmt
        results[fmt] = m.state_dict()
        for name, w in want.items():
            assert rel_err(results[fmt][name], w) < 1e-6, (fmt, name)
    for fmt in HAND_FORMATS[1:]:
        for name in want:
            assert (
                torch.equal(results[fmt][name], results["official_ab"][name])
                or rel_err(results[fmt][name], results["official_ab"][name]) < 1e-7
            ), (fmt, name)


def test_rslora_scale_differs_from_plain_lora(factors, tmp_path):
    path = _lora_file(tmp_path, "peft_rslora", factors)
    rs = load_lora(path)
    plain = load_lora(path, rslora=False)
    assert rs.rslora and math.isclose(rs.deltas[0].scale, 1.0 / math.sqrt(RANK))
    assert math.isclose(plain.deltas[0].scale, 1.0 / RANK)


def _inputs():
    g = torch.Generator().manual_seed(3)
    return torch.randn(2, 5, D, generator=g), torch.randn(2, 7, D, generator=g)


@pytest.mark.parametrize("fmt", HAND_FORMATS)
def test_merged_and_runtime_outputs_agree(model, factors, fmt, tmp_path):
    x, ctx = _inputs()
    base = model(x, ctx)
    sd = write(factors, fmt)
    if fmt == "peft_rslora":
        sd = _lora_file(tmp_path, fmt, factors)
    merged, runtime = copy.deepcopy(model), copy.deepcopy(model)
    apply_lora(merged, sd, strength=0.8, mode="merge")
    rep = apply_lora(runtime, sd, strength=0.8, mode="runtime")
    assert rep.runtime == len(factors) and rep.merged == 0
    y_m, y_r = merged(x, ctx), runtime(x, ctx)
    assert rel_err(y_r, y_m) < 1e-5
    assert rel_err(y_m, base) > 1e-2  # the LoRA really changes the output
    ref = copy.deepcopy(model)
    ref.load_state_dict(expected_merged(model, factors, 0.8))
    assert rel_err(y_m, ref(x, ctx)) < 1e-5


def test_runtime_strength_change_and_removal(model, factors):
    x, ctx = _inputs()
    base = model(x, ctx)
    m = copy.deepcopy(model)
    rep = apply_lora(m, write(factors, "comfyui_alpha"), strength=1.0, mode="runtime")
    half = copy.deepcopy(model)
    half.load_state_dict(expected_merged(model, factors, 0.5))
    rep.set_strength(0.5)
    assert rel_err(m(x, ctx), half(x, ctx)) < 1e-5
    rep.set_strength(0.0)
    assert rel_err(m(x, ctx), base) < 1e-7
    rep.set_strength(1.0)
    remove_lora(m, rep)
    assert all(not mod.adapters for mod in m.modules() if isinstance(mod, WanLinear))
    assert torch.equal(m(x, ctx), base)


def test_merged_strength_change_and_unmerge(model, factors):
    m = copy.deepcopy(model)
    rep = apply_lora(m, write(factors, "kohya"), strength=1.0, mode="merge")
    rep.set_strength(0.25)
    want = expected_merged(model, factors, 0.25)
    assert all(rel_err(m.state_dict()[k], want[k]) < 1e-6 for k in want)
    remove_lora(m, rep)
    assert all(rel_err(m.state_dict()[k], v) < 1e-6 for k, v in model.state_dict().items())
    exact = copy.deepcopy(model)
    rep = apply_lora(exact, write(factors, "kohya"), mode="merge", keep_original=True)
    remove_lora(exact, rep)
    assert all(torch.equal(exact.state_dict()[k], v) for k, v in model.state_dict().items())


def _fp8_model(model):
    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, WanLinear):
            q, s = quantize_tensor(mod.weight.detach())
            mod.weight = nn.Parameter(q, requires_grad=False)
            mod.set_scale(s)
    return m


def test_fp8_merge_requantises_and_runtime_keeps_fp8(model, factors):
    x, ctx = _inputs()
    fp8 = _fp8_model(model)
    deq = copy.deepcopy(model)  # fp32 model holding the dequantised fp8 weights
    deq.load_state_dict({k: v for k, v in fp8.state_dict().items() if not k.endswith("scale_weight")}, strict=False)
    for name, mod in fp8.named_modules():
        if isinstance(mod, WanLinear):
            deq.get_submodule(name).weight.data = mod.dequantized_weight(torch.float32)
    want = expected_merged(deq, factors)
    merged = copy.deepcopy(fp8)
    apply_lora(merged, write(factors, "comfyui_alpha"), mode="merge")
    q = merged.get_submodule("blocks.0.self_attn.q")
    assert q.weight.dtype == torch.float8_e4m3fn
    assert not torch.equal(q.scale_weight, fp8.get_submodule("blocks.0.self_attn.q").scale_weight)
    w = q.dequantized_weight(torch.float32)
    assert rel_err(w, want["blocks.0.self_attn.q.weight"]) < 0.05  # fp8 has 3 mantissa bits
    runtime = copy.deepcopy(fp8)
    apply_lora(runtime, write(factors, "comfyui_alpha"), mode="runtime")
    assert runtime.get_submodule("blocks.0.self_attn.q").weight.dtype == torch.float8_e4m3fn
    ref = copy.deepcopy(deq)
    ref.load_state_dict(want)
    assert rel_err(runtime(x, ctx), ref(x, ctx)) < 1e-5


def test_diff_diff_b_diff_m_and_head_diff(model):
    g = torch.Generator().manual_seed(5)
    sd = {
        "diffusion_model.blocks.0.self_attn.q.diff_b": torch.randn(D, generator=g),
        "diffusion_model.blocks.1.cross_attn.norm_k.diff": torch.randn(D, generator=g),
        "diffusion_model.blocks.0.diff_m": torch.randn(1, 6, D, generator=g),
        "diffusion_model.blocks.1.modulation.diff": torch.randn(1, 6, D, generator=g),
        "diffusion_model.head.head.diff": torch.randn(8, D, generator=g),
        "diffusion_model.head.head.diff_b": torch.randn(8, generator=g),
        "diffusion_model.blocks.1.norm3.diff_b": torch.randn(D, generator=g),
    }
    targets = {
        "blocks.0.self_attn.q.bias": sd["diffusion_model.blocks.0.self_attn.q.diff_b"],
        "blocks.1.cross_attn.norm_k.weight": sd["diffusion_model.blocks.1.cross_attn.norm_k.diff"],
        "blocks.0.modulation": sd["diffusion_model.blocks.0.diff_m"],
        "blocks.1.modulation": sd["diffusion_model.blocks.1.modulation.diff"],
        "head.head.weight": sd["diffusion_model.head.head.diff"],
        "head.head.bias": sd["diffusion_model.head.head.diff_b"],
        "blocks.1.norm3.bias": sd["diffusion_model.blocks.1.norm3.diff_b"],
    }
    x, ctx = _inputs()
    for mode in ("merge", "runtime"):
        m = copy.deepcopy(model)
        rep = apply_lora(m, sd, strength=0.5, mode=mode)
        assert rep.matched == len(sd) and not rep.unmatched
        if mode == "merge":
            for name, diff in targets.items():
                assert torch.allclose(m.state_dict()[name], model.state_dict()[name] + 0.5 * diff), name
            merged_out = m(x, ctx)
        else:
            assert rep.runtime == 3  # q.bias, head.head weight + bias; norms and modulation are merged
            assert rel_err(m(x, ctx), merged_out) < 1e-6


def test_i2v_keys_are_skipped_with_a_count(model, factors):
    sd = write(factors, "comfyui_alpha")
    for n in range(L):
        for lin in ("k_img", "v_img"):
            sd[f"diffusion_model.blocks.{n}.cross_attn.{lin}.lora_down.weight"] = torch.randn(RANK, D)
            sd[f"diffusion_model.blocks.{n}.cross_attn.{lin}.lora_up.weight"] = torch.randn(D, RANK)
        sd[f"diffusion_model.blocks.{n}.cross_attn.norm_k_img.diff"] = torch.randn(D)
    rep = apply_lora(copy.deepcopy(model), sd)
    assert rep.skipped_i2v == 3 * L and rep.matched == len(factors) and not rep.unmatched
    i2v = StandIn(img=True)
    assert apply_lora(i2v, sd).skipped_i2v == 0


def test_zero_matched_keys_raise(model):
    sd = {
        "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.randn(4, 8),
        "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.randn(8, 4),
    }
    with pytest.raises(LoraError, match="none of its 1 targets"):
        apply_lora(copy.deepcopy(model), sd)
    with pytest.raises(LoraError, match="no LoRA weights"):
        load_lora({"blocks.0.self_attn.q.weight": torch.randn(D, D)})


def test_shape_mismatch_names_key_and_shapes_and_changes_nothing(model, factors):
    sd = write(factors, "comfyui_alpha")
    bad = "diffusion_model.blocks.1.ffn.0.lora_up.weight"
    sd[bad.replace("lora_up", "lora_down")] = torch.randn(RANK, 2 * D)  # a LoRA for a wider model
    m = copy.deepcopy(model)
    with pytest.raises(LoraError) as info:
        apply_lora(m, sd)
    msg = str(info.value)
    assert "blocks.1.ffn.0" in msg and f"({FF}, {2 * D})" in msg and f"({FF}, {D})" in msg
    assert all(torch.equal(m.state_dict()[k], v) for k, v in model.state_dict().items())


def test_block_filter_set_and_regex(model, factors):
    sd = write(factors, "comfyui_alpha")
    m = copy.deepcopy(model)
    rep = apply_lora(m, sd, blocks={1})
    assert rep.matched == len(LINEARS) and rep.filtered == len(LINEARS)
    assert torch.equal(m.state_dict()["blocks.0.ffn.0.weight"], model.state_dict()["blocks.0.ffn.0.weight"])
    assert not torch.equal(m.state_dict()["blocks.1.ffn.0.weight"], model.state_dict()["blocks.1.ffn.0.weight"])
    rep = apply_lora(copy.deepcopy(model), sd, blocks=r"\.self_attn\.")
    assert rep.matched == 4 * L


def test_stack_uses_per_expert_strengths(model, factors, tmp_path):
    path = _lora_file(tmp_path, "comfyui_alpha", factors)
    specs = [LoraSpec(str(path), strength=1.0, strength_low=0.25, mode="runtime")]
    high, low = copy.deepcopy(model), copy.deepcopy(model)
    (rep_high,) = apply_lora_stack(high, specs, expert="high")
    (rep_low,) = apply_lora_stack(low, specs, expert="low")
    assert rep_high.strength == 1.0 and rep_low.strength == 0.25
    x, ctx = _inputs()
    ref = copy.deepcopy(model)
    ref.load_state_dict(expected_merged(model, factors, 0.25))
    assert rel_err(low(x, ctx), ref(x, ctx)) < 1e-5
    assert apply_lora_stack(copy.deepcopy(model), [LoraSpec(str(path), 1.0, strength_low=0.0)], "low") == []
    with pytest.raises(InputError):
        LoraSpec(str(path), mode="fused")


def test_runtime_adapters_follow_the_input_device_and_dtype(model, factors):
    m = copy.deepcopy(model)
    apply_lora(m, write(factors, "comfyui_alpha"), mode="runtime")
    x, ctx = _inputs()
    y32 = m(x, ctx)
    m16 = m.to(torch.bfloat16)
    y16 = m16(x.bfloat16(), ctx.bfloat16())
    assert y16.dtype == torch.bfloat16 and rel_err(y16.float(), y32) < 0.05


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_tiny_writer_formats_round_trip(model, fmt):
    sd = model.state_dict()
    ref = copy.deepcopy(model)
    apply_lora(ref, tiny_lora_state_dict(sd, rank=RANK, seed=3, fmt="official"))
    m = copy.deepcopy(model)
    rep = apply_lora(m, tiny_lora_state_dict(sd, rank=RANK, seed=3, fmt=fmt))
    assert rep.matched == L * len(LINEARS) and not rep.unmatched
    for k, v in ref.state_dict().items():
        assert rel_err(m.state_dict()[k], v) < 1e-6, (fmt, k)


@pytest.mark.parametrize("variant", ["wan2.1-i2v", "wan2.1-flf2v", "wan2.1-vace"])
def test_name_map_agrees_with_the_dit_converter(variant):
    from wan_core.dit.convert import diffusers_to_official_name, official_to_diffusers_name
    from wan_core.dit.tiny import tiny_dit_state_dict
    from wan_core.lora import diffusers_to_official_path, official_to_diffusers_path

    names = list(tiny_dit_state_dict(variant, seed=0))
    assert len(names) > 50
    for name in names:
        theirs = official_to_diffusers_name(name)
        assert official_to_diffusers_path(name) == theirs, name
        assert diffusers_to_official_path(theirs) == diffusers_to_official_name(theirs) == name


def test_unsupported_adapter_types_and_sidecar_config(model, factors, tmp_path):
    oft = {
        "lycoris_blocks_0_self_attn_q.oft_blocks": torch.randn(4, 8, 8),
        "lycoris_blocks_0_self_attn_q.hada_t1": torch.randn(4, 4, 1, 1),
    }
    with pytest.raises(LoraError, match="not supported"):
        load_lora(oft)
    folder = tmp_path / "peft_adapter"
    folder.mkdir()
    save_file(write(factors, "peft_rslora"), str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"r": RANK, "lora_alpha": 1, "use_rslora": True}))
    m = copy.deepcopy(model)
    apply_lora(m, folder / "adapter_model.safetensors")
    want = expected_merged(model, factors)
    assert all(rel_err(m.state_dict()[k], want[k]) < 1e-6 for k in want)


def test_kohya_names_with_diffusion_model_and_cache(model, factors, tmp_path):
    from wan_core.lora import load_lora_cached

    sd = {k.replace("lora_unet_", "lora_unet_diffusion_model_"): v for k, v in write(factors, "kohya").items()}
    rep = apply_lora(copy.deepcopy(model), sd)
    assert rep.matched == len(factors) and not rep.unmatched
    path = _lora_file(tmp_path, "kohya", factors)
    assert load_lora_cached(path) is load_lora_cached(str(path))


def test_two_loras_stack_and_remove_independently(model, factors):
    g = torch.Generator().manual_seed(9)
    other = {
        k: (torch.randn(v[0].shape, generator=g) * 0.2, torch.randn(v[1].shape, generator=g) * 0.2)
        for k, v in factors.items()
    }
    x, ctx = _inputs()
    for mode in ("merge", "runtime"):
        m = copy.deepcopy(model)
        first = apply_lora(m, write(factors, "official_ab"), strength=0.6, mode=mode)
        apply_lora(m, write(other, "diffusers"), strength=-0.4, mode=mode, keep_original=False)
        both = expected_merged(model, factors, 0.6)
        for (n, lin), (down, up) in other.items():
            both[f"blocks.{n}.{lin}.weight"] += -0.4 * 0.5 * (up @ down)
        ref = copy.deepcopy(model)
        ref.load_state_dict(both)
        assert rel_err(m(x, ctx), ref(x, ctx)) < 1e-5, mode
        remove_lora(m, first)
        ref.load_state_dict(expected_merged(model, other, -0.4))
        assert rel_err(m(x, ctx), ref(x, ctx)) < 1e-5, mode


def test_runtime_adapter_moves_its_factors_to_the_input_device():
    from wan_core.lora import RuntimeAdapter
    from wan_core.lora.handle import _Strength

    adapter = RuntimeAdapter(_Strength(1.0), 0.5, torch.randn(RANK, D), torch.randn(FF, RANK), torch.randn(FF))
    y = adapter(torch.randn(3, D, device="meta", dtype=torch.bfloat16))
    assert y.device.type == "meta" and y.dtype == torch.bfloat16 and y.shape == (3, FF)
    x = torch.randn(3, D)
    down, up, bias = adapter._master
    assert torch.allclose(adapter(x), 0.5 * (x @ down.T @ up.T + bias), atol=1e-5)


def test_keep_original_is_exact_in_bf16_and_fp8_and_safe_out_of_order(model, factors):
    g = torch.Generator().manual_seed(2)
    other = {
        k: (torch.randn(v[0].shape, generator=g), torch.randn(v[1].shape, generator=g)) for k, v in factors.items()
    }
    for m in (copy.deepcopy(model).to(torch.bfloat16), _fp8_model(model)):
        before = {k: v.clone() for k, v in m.state_dict().items()}
        fresh = copy.deepcopy(m)
        apply_lora(fresh, write(factors, "kohya"), strength=0.7, keep_original=True)
        rep = apply_lora(m, write(factors, "kohya"), strength=0.2, keep_original=True)
        for s in (1.5, -0.3, 0.7):
            rep.set_strength(s)
        assert all(torch.equal(m.state_dict()[k], v) for k, v in fresh.state_dict().items())  # no drift
        rep2 = apply_lora(m, write(other, "comfyui_alpha"), keep_original=True)
        remove_lora(m, rep2)
        remove_lora(m, rep)
        assert all(torch.equal(m.state_dict()[k], v) for k, v in before.items())
    m = copy.deepcopy(model)
    first = apply_lora(m, write(factors, "kohya"), keep_original=True)
    apply_lora(m, write(other, "comfyui_alpha"), keep_original=True)
    remove_lora(m, first)  # not the last one applied: subtracts instead of restoring
    want = expected_merged(model, other)
    assert all(rel_err(m.state_dict()[k], want[k]) < 1e-6 for k in want)


def test_lycoris_loha_and_lokr(model):
    g = torch.Generator().manual_seed(4)
    r = 2
    w1a, w1b, w2a, w2b = (
        torch.randn(D, r, generator=g),
        torch.randn(r, D, generator=g),
        torch.randn(D, r, generator=g),
        torch.randn(r, D, generator=g),
    )
    k1, k2a, k2b = (
        torch.randn(4, 4, generator=g),
        torch.randn(FF // 4, r, generator=g),
        torch.randn(r, D // 4, generator=g),
    )
    f1, f2 = torch.randn(2, 4, generator=g), torch.randn(D // 2, D // 4, generator=g)
    sd = {
        "lycoris_blocks_0_self_attn_q.hada_w1_a": w1a,
        "lycoris_blocks_0_self_attn_q.hada_w1_b": w1b,
        "lycoris_blocks_0_self_attn_q.hada_w2_a": w2a,
        "lycoris_blocks_0_self_attn_q.hada_w2_b": w2b,
        "lycoris_blocks_0_self_attn_q.alpha": torch.tensor(1.0),
        "lycoris_blocks_1_ffn_0.lokr_w1": k1,
        "lycoris_blocks_1_ffn_0.lokr_w2_a": k2a,
        "lycoris_blocks_1_ffn_0.lokr_w2_b": k2b,
        "lycoris_blocks_1_ffn_0.alpha": torch.tensor(3.0),
        "diffusion_model.blocks.0.self_attn.o.lokr_w1": f1,
        "diffusion_model.blocks.0.self_attn.o.lokr_w2": f2,
        "diffusion_model.blocks.0.self_attn.o.alpha": torch.tensor(7.0),
    }  # both factors whole: alpha unused
    want = {
        "blocks.0.self_attn.q.weight": (w1a @ w1b) * (w2a @ w2b) * (1.0 / r),
        "blocks.1.ffn.0.weight": torch.kron(k1, k2a @ k2b) * (3.0 / r),
        "blocks.0.self_attn.o.weight": torch.kron(f1, f2),
    }
    for mode in ("merge", "runtime"):
        m = copy.deepcopy(model)
        rep = apply_lora(m, sd, strength=0.5, mode=mode)
        assert rep.matched == 3 and rep.merged == 3
        for name, delta in want.items():
            assert rel_err(m.state_dict()[name] - model.state_dict()[name], 0.5 * delta) < 1e-6, name
