"""Sequence and CFG parallelism on torch.distributed (gloo, CPU): 2 and 3 processes give the one-process output.

Each group of cases runs in one spawn (process start-up dominates on a 2-core machine); the
rank functions live in tests/parallel_cases.py. Tolerance: fp32 rel err <= 1e-5.
"""

from __future__ import annotations

import sys
from pathlib import Path

import parallel_cases as cases
import pytest
import torch

from wan_core.parallel.local import spawn_local

TOLERANCE = 1e-5


def _run(world: int, case_list: list, tmp_path: Path, monkeypatch) -> dict[str, float]:
    parent = Path(__file__).resolve().parents[2]  # see test_multigpu_nodes.spawn_safe_sys_path
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != parent])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "errors.pt"
    spawn_local(cases.run_cases, world, "cpu", (case_list, str(out)), timeout_s=60)
    return torch.load(out)


@pytest.mark.parametrize(
    "world,case_list", [(2, cases.CASES_TWO), (3, cases.CASES_THREE)], ids=["2-processes", "3-processes"]
)
def test_parallel_forward_equals_one_process(world, case_list, tmp_path, monkeypatch):
    errors = _run(world, case_list, tmp_path, monkeypatch)
    assert set(errors) == {c[0] for c in case_list}
    bad = {name: err for name, err in errors.items() if not err <= TOLERANCE}
    assert not bad, bad


def test_shares_pad_the_last_rank():
    from wan_core.parallel.sequence import Shares

    shares = Shares(tokens=35, parts=3)
    assert (shares.size, shares.padded) == (12, 36)
    assert [shares.valid(i) for i in range(3)] == [12, 12, 11]
    assert [Shares(2, 3).valid(i) for i in range(3)] == [1, 1, 0]


def test_ring_merge_is_exact_attention():
    from wan_core.parallel.ring import attention_with_lse, merge

    q, k, v = torch.randn(1, 9, 2, 16), torch.randn(1, 13, 2, 16), torch.randn(1, 13, 2, 16)
    whole = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / 4.0, -1)
    expected = torch.einsum("bhqk,bkhd->bqhd", whole, v)
    acc = None
    for part in (slice(0, 5), slice(5, 13)):
        acc = merge(acc, attention_with_lse(q, k[:, part], v[:, part]))
    assert torch.allclose(acc[0], expected, atol=1e-5)


def test_cfg_split_cuts_batched_inputs_and_keeps_shared_ones():
    from wan_core.parallel.runner import ForwardCall

    x = torch.arange(2.0)[:, None, None, None, None].expand(2, 16, 1, 4, 4)
    shared_text = torch.zeros(2, 8)  # ONE prompt of 2 tokens, shared by both rows: never cut by token
    extras = {
        "vace_context": [torch.arange(2.0).view(2, 1, 1, 1, 1).expand(2, 96, 1, 4, 4), torch.ones(1, 96, 1, 4, 4)],
        "vace_scale": [1.0, 0.5],
        "clip_fea": torch.ones(1, 17, 64),
    }
    call = ForwardCall(x, torch.tensor([900.0, 800.0]), [shared_text], extras)
    uncond = call.rows(1, 2)
    assert uncond.x.shape[0] == 1 and float(uncond.x[0, 0, 0, 0, 0]) == 1.0
    assert uncond.t.tolist() == [800.0] and uncond.context[0] is shared_text
    assert [float(v[0, 0, 0, 0, 0]) for v in uncond.extras["vace_context"]] == [1.0, 1.0]
    assert uncond.extras["vace_scale"] == [1.0, 0.5] and uncond.extras["clip_fea"].shape[0] == 1
    per_sample = ForwardCall(x, torch.tensor(900.0), [torch.zeros(3, 8), torch.ones(5, 8)])
    assert [c.shape[0] for c in per_sample.rows(1, 2).context] == [5]


def test_a_sent_forward_call_never_aliases_the_callers_tensors():
    """Rank 0 keeps computing with the call it sends: the workers must get their own copy, even on the CPU."""
    from wan_core.parallel.runner import ForwardCall

    x, text, clip = torch.randn(2, 16, 1, 4, 4), torch.randn(6, 8), torch.randn(1, 17, 64)
    sent = ForwardCall(x, torch.tensor([900.0, 900.0]), [text], {"clip_fea": clip, "scales": [clip]}).to_cpu()
    mine = {t.untyped_storage().data_ptr() for t in (x, text, clip)}
    theirs = [sent.x, sent.context[0], sent.extras["clip_fea"], sent.extras["scales"][0]]
    assert not mine & {t.untyped_storage().data_ptr() for t in theirs}
    assert torch.equal(sent.x, x) and torch.equal(sent.context[0], text)


def test_queue_link_pickles_a_command_before_post_returns():
    """torch's queue pickler moves CPU tensors into shared memory: done in the poster's thread, once per worker,
    so no feeder thread swaps a tensor's storage later while rank 0 computes with it."""
    import torch.multiprocessing as mp

    from wan_core.parallel.links import QueueInbox, QueueLink
    from wan_core.parallel.runner import ForwardCall
    from wan_core.parallel.service import Forward, LoraState

    ctx = mp.get_context("spawn")
    commands, answers = [ctx.Queue(), ctx.Queue()], ctx.Queue()
    link = QueueLink(commands, answers, watch=lambda: None, shutdown=lambda: None)
    call = ForwardCall(torch.randn(2, 16, 1, 4, 4), torch.tensor([1.0, 1.0]), [torch.randn(3, 8)])
    link.post(Forward("dit1", LoraState(), call))
    assert call.x.is_shared() and call.context[0].is_shared()  # already moved, synchronously
    where = call.x.untyped_storage().data_ptr()
    for q in commands:  # every worker gets a handle of its own
        received = QueueInbox(1, q, answers, parent_alive=lambda: True).receive()
        assert isinstance(received, Forward) and torch.equal(received.call.x, call.x)
    assert call.x.untyped_storage().data_ptr() == where  # nothing moved it after post() returned
    for q in [*commands, answers]:
        q.close()
        q.cancel_join_thread()
