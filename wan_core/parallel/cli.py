"""``torchrun --nproc-per-node N -m wan_core generate ...``: one video on N GPUs.

Every process parses the same command line. Rank 0 runs the ordinary generate command
(text encoder, sampler, VAE, writing the file); its DiT calls go to all ranks. The
other ranks only join the group, load the DiT(s) rank 0 names and serve forwards until
rank 0 is done. Only rank 0 writes.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..devices import compute_dtype_for, resolve_device, resolve_dtype
from ..errors import ParallelError
from ..lora import LoraSpec
from ..sampling import Experts
from ..sampling.model import DiTLike
from .distributed import RankInfo, init_group, local_device, member_of, new_group, teardown, torchrun_env
from .fsdp import shard_blocks
from .layout import Layout
from .links import BroadcastInbox, BroadcastLink
from .options import options_from
from .service import DiTSpec, Leader, LoraState, ModelHost, ParallelDiT, serve

log = logging.getLogger(__name__)

# Workers wait for rank 0's next command while it encodes text or decodes video: hours are fine.
CONTROL_TIMEOUT_S = 4 * 3600.0


def run(args: argparse.Namespace, generate: Callable[[argparse.Namespace, Leader], int]) -> int:
    """Join the group; rank 0 calls ``generate(args, leader)``, the others serve until it returns."""
    env = torchrun_env()
    if env is None:
        raise ParallelError("The multi-GPU generate runs under torchrun (torchrun --nproc-per-node N -m wan_core ...).")
    rank, world, local_rank = env
    device_type = resolve_device(args.device).type
    info = RankInfo(rank, world, local_device(device_type, local_rank))
    options = options_from(args)
    init_group(info, None, options.timeout_s)
    try:
        control = member_of(new_group(None, CONTROL_TIMEOUT_S, "gloo"), "the gloo control group")
        layout = Layout(options, info.device)
        if rank != 0:
            serve(ModelHost(layout), BroadcastInbox(control))
            return 0
        log.info("%s; rank 0 on %s", layout.describe(), info.device)
        leader = Leader(layout, BroadcastLink(control))
        args.device = str(info.device)
        try:
            return generate(args, leader)
        finally:
            with contextlib.suppress(RuntimeError):
                leader.stop()
    finally:
        teardown()


@dataclass(frozen=True)
class LeaderPlacement:
    """Rank 0's :class:`~wan_core.modelset.Placement`: each DiT call of the pipeline runs on all ranks.

    ``states``: the LoRA stack each role's workers hold (the CLI's LoRAs are fixed for the run).
    """

    leader: Leader
    states: dict[str, LoraState]

    def sampling_target(self, target: DiTLike | Experts, loras: tuple[LoraSpec, ...]) -> DiTLike | Experts:
        if isinstance(target, Experts):
            return replace(target, high=self._proxy("high", target.high), low=self._proxy("low", target.low))
        return self._proxy("high", target)

    def _proxy(self, role: str, local: DiTLike) -> DiTLike:
        return ParallelDiT(self.leader, role, local, self.states[role])

    def describe(self) -> str:
        return self.leader.layout.describe()


def distribute(pipe: Any, leader: Leader, args: argparse.Namespace, loras: list) -> None:
    """Load the pipeline's DiT(s) on every worker and give the pipeline's ModelSet rank 0's placement."""
    device = torch.device(args.device)
    weights = resolve_dtype(args.dtype, device)
    compute = compute_dtype_for(weights, device)
    sources = {"high": args.model, "low": args.model_low}
    experts = {"high": "high" if args.model_low else None, "low": "low"}
    states: dict[str, LoraState] = {}
    for role in ("high", "low"):
        if not sources[role]:
            continue
        source = sources[role] if len(sources[role]) > 1 else sources[role][0]
        states[role] = LoraState(tuple(loras), experts[role])
        leader.load(role, DiTSpec(source, weights, args.attention, 0, compute), loras=states[role])
        local = pipe.models.high if role == "high" else pipe.models.low
        if leader.layout.options.shard_weights:  # rank 0's LoRAs are merged already (pipe.add_loras)
            shard_blocks(local, leader.layout.mesh)
    pipe.models = replace(pipe.models, placement=LeaderPlacement(leader, states))
