"""The ComfyUI side of multi-GPU models, through the node classes, with gloo on the CPU.

One worker process (rank 1) serves the Model Loader's ``gpus="cpu,cpu"`` model; the test
walks its whole life: spawn, two prompts on the same worker, a LoRA added and removed,
an interrupt, a killed worker (typed error, not a hang), the restart, and the unload.
Every sampled latent is compared with the single-process run of the same graph.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

import nodes
from nodes import comfy_bridge as bridge
from nodes import multigpu
from nodes.types import TextEmbeds
from wan_core.conditioning import Conditioning
from wan_core.errors import InputError, ParallelWorkerError, WanInterrupted
from wan_core.progress import RunHooks

DIT = "wan2.1_t2v_1.3B_bf16.safetensors"
LORA = "wan2.1_t2v_1.3B_example_lora.safetensors"
HIGH = "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors"
LOW = "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors"
TIMEOUT_S = 20.0


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from wan_core.tiny_build import write_tiny_models

    root = tmp_path_factory.mktemp("tiny_multigpu")
    write_tiny_models(root, names=(DIT, LORA, HIGH, LOW))
    return root


def spawn_safe_sys_path(monkeypatch) -> None:
    """Spawned children inherit sys.path; pytest puts the repository's parent folder first (the repo root
    has an __init__.py), where a sibling folder named like a stdlib module (e.g. another checkout called
    "queue") would shadow it in the child."""
    parent = Path(__file__).resolve().parents[2]
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != parent])


@pytest.fixture()
def env(models_dir, monkeypatch):
    spawn_safe_sys_path(monkeypatch)
    monkeypatch.setenv("WAN_CORE_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("WAN_CORE_PARALLEL_TIMEOUT_S", str(TIMEOUT_S))
    monkeypatch.setenv("WAN_CORE_WORKER_THREADS", "1")
    monkeypatch.setattr(bridge, "compute_device", lambda: torch.device("cpu"))
    yield
    pool = multigpu.active_pool()
    if pool is not None:
        pool.stop("test finished")


def _load(gpus: str = "", model: str = DIT, low: str = "none"):
    loader = nodes.NODE_CLASS_MAPPINGS["WanCoreModelLoader"]()
    return loader.load(model, low, "fp32", "sdpa", 0, gpus=gpus)["result"][0]


def _with_lora(handle):
    stack = nodes.NODE_CLASS_MAPPINGS["WanCoreLoraStack"]().stack(LORA, 0.8, -1.0, "merge", "")[0]
    return nodes.NODE_CLASS_MAPPINGS["WanCoreApplyLoraStack"]().apply(handle, stack)["result"][0]


def _sample(handle, seed: int = 1, steps: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    embeds = TextEmbeds([torch.randn(6, 64, generator=gen)], [torch.randn(4, 64, generator=gen)])
    node = nodes.NODE_CLASS_MAPPINGS["WanCoreSampler"]()
    latent = node.run(
        model=handle,
        text_embeds=embeds,
        conditioning=Conditioning(latent_shape=(16, 1, 10, 14)),  # 35 tokens: an odd count
        seed=seed,
        steps=steps,
        cfg=4.0,
        cfg_low_noise=-1.0,
        shift=5.0,
        solver="unipc",
        denoise=1.0,
        moe_boundary=0.0,
        batch_size=1,
    )["result"][0]
    return latent["samples"]


def _interrupt_after_first_step(monkeypatch) -> None:
    state = {"steps": 0}

    def hooks(total, want_preview=True):
        def progress(step, steps, preview):
            state["steps"] = step

        return RunHooks(progress=progress, interrupted=lambda: state["steps"] >= 1), lambda: None

    monkeypatch.setattr(bridge, "make_hooks", hooks)


def test_gpus_input_is_optional_and_parsed():
    loader = nodes.NODE_CLASS_MAPPINGS["WanCoreModelLoader"]
    assert "gpus" in loader.INPUT_TYPES()["optional"] and "gpus" not in loader.INPUT_TYPES()["required"]
    assert multigpu.parse_gpus("") == []
    assert multigpu.parse_gpus("0, 1", "cuda") == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert multigpu.parse_gpus("cpu,cpu") == [torch.device("cpu")] * 2
    for bad in ("0", "0,0", "0,x y", "cpu,cuda:1"):
        with pytest.raises(InputError):
            multigpu.parse_gpus(bad, "cuda")


def test_worker_lifecycle_through_the_nodes(env, monkeypatch):
    single = _load()
    reference = _sample(single)
    reference_lora = _sample(_with_lora(single))
    assert rel_err(reference_lora, reference) > 1e-3  # the LoRA visibly changes the result

    # spawn: rank 0 here, one worker process
    handle = _load("cpu,cpu")
    pool = multigpu.active_pool()
    (worker,) = pool.processes
    assert worker.is_alive()
    rank0_batches = []
    hook = handle.high.register_forward_pre_hook(lambda module, args: rank0_batches.append(args[0].shape[0]))
    assert rel_err(_sample(handle), reference) <= 1e-5
    hook.remove()
    assert rank0_batches == [1, 1]  # the sampler's [cond, uncond] batches were split: the worker ran uncond

    # the next prompt reuses the same worker; a LoRA is followed, and dropped again
    assert rel_err(_sample(_with_lora(handle)), reference_lora) <= 1e-5
    assert rel_err(_sample(handle), reference) <= 1e-5
    assert multigpu.active_pool() is pool and pool.processes == [worker] and worker.is_alive()

    # an interrupt stops the run at the next step; the group stays usable
    with monkeypatch.context() as m:
        _interrupt_after_first_step(m)
        with pytest.raises(WanInterrupted):
            _sample(handle)
    assert worker.is_alive() and rel_err(_sample(handle), reference) <= 1e-5

    # a killed worker: a typed error well within the collective timeout, not a hang
    os.kill(worker.pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(ParallelWorkerError, match="worker rank 1"):
        _sample(handle)
    assert time.monotonic() - started < TIMEOUT_S
    assert not pool.running

    # the next run starts a fresh worker and loads the weights again
    assert rel_err(_sample(handle), reference) <= 1e-5
    pool = multigpu.active_pool()
    (worker,) = pool.processes
    assert worker.is_alive()

    # unloading the model (ComfyUI dropping the loader's output) stops the worker
    del handle
    gc.collect()
    worker.join(TIMEOUT_S)
    assert not worker.is_alive() and not pool.running


def test_a14b_expert_pair_on_two_ranks(env):
    """Both experts live on the worker too (the low-noise one parked on the CPU until its steps), each with
    its own LoRA strength, and the run equals the one-process run."""
    single = _with_lora(_load(model=HIGH, low=LOW))
    reference = _sample(single, steps=4)
    handle = _with_lora(_load("cpu,cpu", model=HIGH, low=LOW))
    assert set(handle.placement.keys) == {"high", "low"}
    assert rel_err(_sample(handle, steps=4), reference) <= 1e-5
