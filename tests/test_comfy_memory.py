"""Our nodes under a stand-in of ComfyUI's memory manager (tests/fake_comfy_manager.py), on the CPU.

The fake keeps ComfyUI's decisions (load_models_gpu grants, free_memory evictions,
unload_all_models for /free) on a simulated accelerator, so these check what a real ComfyUI
on a small GPU would see: what is registered and loaded, how many DiT blocks stream for a
grant, who evicts whom, and that nothing outlives the node outputs. The real ComfyUI checks
are in tests/test_comfyui_memory.py; the H200 run in benchmarks/bench_memory.py.
"""

from __future__ import annotations

import dataclasses
import gc

import pytest
import torch
from fake_comfy_manager import ACCELERATOR, CPU, MIB, FakeManager, FakeModelPatcher, install
from safetensors.torch import save_file
from workflow_tools import API_DIR, execute_api, load_json, override_api

from wan_core.budget import dit_block_bytes, plan_block_swap
from wan_core.dit.tiny import tiny_dit_state_dict
from wan_core.tiny_build import write_tiny_models
from wan_core.tiny_models import TINY

DEEP = "deep_t2v.safetensors"  # a tiny DiT with 8 blocks: enough for partial plans
SMALL = {"width": 32, "height": 32, "length": 5, "steps": 1}
BIG = 1 << 40


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_comfy_models")
    write_tiny_models(
        root,
        names=(
            "wan2.1_t2v_1.3B_bf16.safetensors",
            "wan_2.1_vae.safetensors",
            "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
            "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors",
            "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors",
        ),
    )
    deep = tiny_dit_state_dict("wan2.1-t2v", seed=3, sizes=dataclasses.replace(TINY, dit_layers=8))
    save_file(
        {f"model.diffusion_model.{k}": v.contiguous() for k, v in deep.items()}, str(root / "diffusion_models" / DEEP)
    )
    return root


@pytest.fixture
def inside(monkeypatch, models_dir, tmp_path):
    """(manager, nodes package running inside the fake ComfyUI); the capacity is set by the test."""
    monkeypatch.setenv("WAN_CORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(models_dir))  # the plain nodes' reference runs
    manager = FakeManager(capacity=BIG)
    return manager, install(monkeypatch, manager, models_dir)


def _t2v(model_name: str = "wan2.1_t2v_1.3B_bf16.safetensors", seed: int = 1, decode: bool = True, **loader) -> dict:
    """The tiny T2V graph without its saver (and without the VAE decode: ``decode=False``)."""
    api = override_api(load_json(API_DIR / "wan21_t2v_1.3b.json"), {**SMALL, "seed": seed})
    dropped = {"WanCoreSaveVideo"} | (set() if decode else {"WanCoreVAEDecode"})
    api = {k: v for k, v in api.items() if v["class_type"] not in dropped}
    (nid,) = [k for k, v in api.items() if v["class_type"] == "WanCoreModelLoader"]
    api[nid]["inputs"].update(model_name=model_name, **loader)
    return api


def _latent(outputs: dict) -> torch.Tensor:
    (latent,) = [o["result"][0]["samples"] for o in outputs.values() if isinstance(o["result"][0], dict)]
    return latent


def _dit(outputs: dict):
    (handle,) = [o["result"][0] for o in outputs.values() if type(o["result"][0]).__name__ == "ModelSet"]
    return handle.high


def test_every_model_registers_and_the_run_matches_standalone(inside):
    manager, package = inside
    outputs = execute_api(_t2v(), package.NODE_CLASS_MAPPINGS)
    held = dict(manager.loaded())
    assert set(held) == {"WanDiT", "WanVAE", "UMT5Encoder"}, held
    sizes = {type(m.model.model).__name__: m.model_memory() for m in manager.current_loaded_models}
    assert held == sizes  # each loaded whole: the accelerator is large
    standalone = execute_api(_t2v())  # the same graph through the plain nodes (no manager)
    assert torch.equal(_latent(outputs), _latent(standalone))


def _deep_sizes(package) -> tuple[int, list[int], int]:
    """(fixed bytes, block bytes, run bytes) of the deep DiT for SMALL, as the sampler estimates them."""
    outputs = execute_api(_t2v(DEEP), package.NODE_CLASS_MAPPINGS)
    dit = _dit(outputs)
    fixed, blocks = dit_block_bytes(dit)
    patcher = package.comfy_bridge._patchers[dit]
    return fixed, blocks, patcher.run_bytes


def test_a_dit_larger_than_the_grant_streams_just_enough_blocks(inside):
    manager, package = inside
    fixed, blocks, run = _deep_sizes(package)
    # room for the run, the reserve, the fixed part and 4 of the 8 blocks' worth of weights
    manager.capacity = run + manager.reserve + fixed + 4 * blocks[0] + manager.inference
    manager.unload_all_models()
    outputs = execute_api(_t2v(DEEP, seed=2, decode=False), package.NODE_CLASS_MAPPINGS)  # (the VAE would evict it)
    dit = _dit(outputs)
    budget = manager.capacity - run - manager.reserve
    expected = plan_block_swap(fixed, blocks, budget)
    assert 0 < expected.swapped < len(blocks)
    assert len(dit.block_swap.indices) == expected.swapped
    assert dict(manager.loaded())["WanDiT"] == expected.resident
    assert expected.peak + run + manager.reserve <= manager.capacity
    reference = execute_api(_t2v(DEEP, seed=2, decode=False))  # plain nodes: every block resident
    assert torch.equal(_latent(outputs), _latent(reference))


def test_a_manual_block_swap_is_used_as_given(inside):
    manager, package = inside
    outputs = execute_api(_t2v(DEEP, block_swap=3), package.NODE_CLASS_MAPPINGS)
    dit = _dit(outputs)
    assert len(dit.block_swap.indices) == 3
    fixed, blocks = dit_block_bytes(dit)
    assert dict(manager.loaded())["WanDiT"] == fixed + sum(blocks[3:])


def test_a_native_model_evicts_ours_and_ours_comes_back(inside):
    manager, package = inside
    outputs = execute_api(_t2v(DEEP), package.NODE_CLASS_MAPPINGS)
    dit = _dit(outputs)
    fixed, blocks = dit_block_bytes(dit)
    ours = sum(size for _, size in manager.loaded())
    manager.capacity = ours + 2 * MIB
    native = torch.nn.Linear(2048, 2048)  # 16 MiB of fp32 weights: our VAE and umT5 are not enough room
    patcher = FakeModelPatcher(native, ACCELERATOR, CPU)
    manager.load_models_gpu([patcher], memory_required=1 * MIB)
    held = dict(manager.loaded())
    assert patcher.loaded_size() == patcher.model_size()
    assert held.get("WanDiT", 0) < fixed + sum(blocks)  # streamed more blocks or unloaded whole
    assert sum(held.values()) + patcher.loaded_size() <= manager.capacity
    execute_api(_t2v(DEEP, seed=5, decode=False), package.NODE_CLASS_MAPPINGS)  # ours again: native is evicted
    assert dict(manager.loaded())["WanDiT"] > held.get("WanDiT", 0)
    assert patcher.loaded_size() < patcher.model_size()


def test_free_unloads_ours_and_calls_unload_callbacks(inside):
    manager, package = inside
    outputs = execute_api(_t2v(), package.NODE_CLASS_MAPPINGS)
    dit = _dit(outputs)

    class Owner:
        unloaded = 0

        def stop(self):
            self.unloaded += 1

    owner = Owner()
    package.comfy_bridge.manage(dit, package.comfy_bridge.placement("diffusion"), on_unload=owner.stop)
    manager.unload_all_models()  # what POST /free {"unload_models": true} calls
    assert manager.loaded() == [] and owner.unloaded == 1
    assert dit.device == CPU
    del owner
    gc.collect()
    package.comfy_bridge.use_models([dit], lambda: 0)
    manager.unload_all_models()  # the callback's owner is gone: held weakly, nothing to call


def test_outputs_dropped_means_models_gone(inside):
    manager, package = inside
    outputs = execute_api(_t2v(), package.NODE_CLASS_MAPPINGS)
    assert manager.loaded()
    del outputs
    gc.collect()
    assert manager.loaded() == [] and package.model_cache.live_count() == 0


def test_expert_switch_goes_through_the_manager(inside):
    manager, package = inside
    api = override_api(load_json(API_DIR / "wan22_a14b_t2v.json"), {**SMALL, "steps": 4})
    api = {k: v for k, v in api.items() if v["class_type"] != "WanCoreSaveVideo"}
    outputs = execute_api(api, package.NODE_CLASS_MAPPINGS)
    (handle,) = [o["result"][0] for o in outputs.values() if type(o["result"][0]).__name__ == "ModelSet"]
    bridge = package.comfy_bridge
    high, low = bridge._patchers[handle.high], bridge._patchers[handle.low]
    dits = [m.model for m in manager.current_loaded_models if type(m.model.model).__name__ == "WanDiT"]
    assert dits == [low, high]  # most recent first: the low expert ran last
    assert low.loaded_size() == low.model_size() and high.loaded_size() == high.model_size()
    # memory for one expert only: loading the low one unloads the high one
    manager.unload_all_models()
    manager.capacity = high.model_size() + high.run_bytes + manager.reserve + manager.inference + MIB
    sampling = {k: v for k, v in override_api(api, {"seed": 9}).items() if v["class_type"] != "WanCoreVAEDecode"}
    execute_api(sampling, package.NODE_CLASS_MAPPINGS)
    assert low.loaded_size() > 0 and high.loaded_size() < high.model_size()
    assert high.loaded_size() + low.loaded_size() <= manager.capacity


def test_the_same_file_loads_once(inside):
    _, package = inside
    loader = package.NODE_CLASS_MAPPINGS["WanCoreModelLoader"]()
    name = "wan2.1_t2v_1.3B_bf16.safetensors"
    first = loader.load(name, "none", "auto", "auto", 0)["result"][0]
    second = loader.load(name, "none", "auto", "sdpa", 2)["result"][0]  # another loader, other run settings
    assert second.high is first.high  # one copy; the later settings apply
    assert (
        second.high.attention_backend == "sdpa" and package.comfy_bridge._patchers[first.high].block_swap_override == 2
    )
    int8 = loader.load(name, "none", "int8", "auto", 0)["result"][0]
    assert int8.high is not first.high  # other weights, another copy
    vae_loader = package.NODE_CLASS_MAPPINGS["WanCoreVAELoader"]()
    assert (
        vae_loader.load("wan_2.1_vae.safetensors", "auto")["result"][0]
        is vae_loader.load("wan_2.1_vae.safetensors", "auto")["result"][0]
    )


def test_no_vram_grant_streams_every_block(inside):
    """--novram: ComfyUI grants 0.1 bytes; the DiT then keeps only what never streams on the device."""
    manager, package = inside
    dit = _dit(execute_api(_t2v(DEEP, decode=False), package.NODE_CLASS_MAPPINGS))
    patcher = package.comfy_bridge._patchers[dit]
    manager.unload_all_models()
    patcher.partially_load(ACCELERATOR, 0.1)
    fixed, blocks = dit_block_bytes(dit)
    assert len(dit.block_swap.indices) == len(blocks) and patcher.loaded_size() == fixed


def test_unloading_rank0_stops_the_multi_gpu_workers(inside, monkeypatch, models_dir):
    from test_multigpu_nodes import spawn_safe_sys_path

    manager, package = inside
    spawn_safe_sys_path(monkeypatch)
    monkeypatch.setenv("WAN_CORE_PARALLEL_TIMEOUT_S", "20")
    monkeypatch.setenv("WAN_CORE_WORKER_THREADS", "1")
    loader = package.NODE_CLASS_MAPPINGS["WanCoreModelLoader"]()
    handle = loader.load("wan2.1_t2v_1.3B_bf16.safetensors", "none", "fp32", "sdpa", 0, gpus="cpu,cpu")["result"][0]
    multigpu = package.multigpu
    pool = multigpu.active_pool()
    try:
        assert pool.running and handle.high in package.comfy_bridge._patchers  # rank 0's copy is registered
        package.comfy_bridge.use_models([handle.high], lambda: 0)  # as a sampling run leaves it
        manager.unload_all_models()  # "Unload models" / POST /free
        assert not pool.running and not any(p.is_alive() for p in pool.processes)
    finally:
        if multigpu.active_pool() is not None:
            multigpu.active_pool().stop("test finished")


def test_the_grant_is_cut_to_what_the_activations_leave(inside):
    """ComfyUI lets weights take 40% of the free memory whatever the run needs; ours never take more than
    the free memory minus the run's activations and the reserve, so the run itself still fits."""
    manager, package = inside
    big = {"width": 256, "height": 256, "length": 33}
    api = override_api(_t2v(DEEP, decode=False), big)
    dit = _dit(execute_api(api, package.NODE_CLASS_MAPPINGS))
    patcher = package.comfy_bridge._patchers[dit]
    fixed, blocks = dit_block_bytes(dit)
    run = patcher.run_bytes
    weights = fixed + sum(blocks)
    assert run > 0.4 * weights
    manager.unload_all_models()
    manager.inference = 0
    # free - reserve = 60% of the weights + the run; ComfyUI's 40% rule alone would grant all the weights
    manager.capacity = int((0.6 * weights + run) / 0.3)
    manager.reserve = int(0.7 * manager.capacity)
    execute_api(override_api(api, {"seed": 4}), package.NODE_CLASS_MAPPINGS)
    plan = plan_block_swap(fixed, blocks, 0, len(dit.block_swap.indices) if dit.block_swap else 0)
    assert plan.swapped > 0 and plan.peak + run + manager.reserve <= manager.capacity


def test_stopped_workers_restart_for_the_next_run(monkeypatch, tmp_path_factory):
    """After an unload stopped them (``stop_workers``), the next run starts the workers again, LoRAs included."""
    import test_multigpu_nodes as mg

    models = tmp_path_factory.mktemp("restart_models")
    write_tiny_models(models, names=(mg.DIT, mg.LORA))
    mg.spawn_safe_sys_path(monkeypatch)
    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(models))
    monkeypatch.setenv("WAN_CORE_PARALLEL_TIMEOUT_S", str(mg.TIMEOUT_S))
    monkeypatch.setenv("WAN_CORE_WORKER_THREADS", "1")
    monkeypatch.setattr(mg.bridge, "compute_device", lambda: torch.device("cpu"))
    try:
        reference = mg._sample(mg._with_lora(mg._load()))
        handle = mg._load("cpu,cpu")
        mg._sample(handle)
        handle.placement.stop_workers()  # what ComfyUI's unload of rank 0's copy calls
        assert not mg.multigpu.active_pool().running
        assert mg.rel_err(mg._sample(mg._with_lora(handle)), reference) <= 1e-5
        assert mg.multigpu.active_pool().running
    finally:
        pool = mg.multigpu.active_pool()
        if pool is not None:
            pool.stop("test finished")
