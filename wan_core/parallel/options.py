"""Multi-GPU run options and their command-line flags (no torch import: ``python -m wan_core --help`` stays fast)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..errors import ParallelError

ATTENTION_MODES = ("auto", "ulysses", "ring")


@dataclass(frozen=True)
class ParallelOptions:
    """How a multi-GPU model runs.

    * ``cfg_split``: a batched cond + uncond forward runs cond on one half of the ranks and
      uncond on the other (needs an even rank count), each half splitting the tokens.
    * ``attention``: "ulysses" (all-to-all over heads), "ring" (keys/values round the ring),
      or "auto" (Ulysses when the heads divide by the group size, else ring).
    * ``shard_weights``: FSDP2 ``fully_shard`` the blocks over all ranks instead of a full copy
      on each (less memory per GPU, one all-gather of each block's weights per forward).
    * ``timeout_s``: how long a collective may wait for a peer before the run fails.
    """

    cfg_split: bool = True
    attention: str = "auto"
    shard_weights: bool = False
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_MODES:
            raise ParallelError(f"attention must be one of {ATTENTION_MODES}, got {self.attention!r}.")
        if self.timeout_s <= 0:
            raise ParallelError(f"timeout_s must be positive, got {self.timeout_s}.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The generate command's multi-GPU flags (used when started by torchrun)."""
    group = parser.add_argument_group("several GPUs (start with: torchrun --nproc-per-node N -m wan_core generate)")
    group.add_argument(
        "--no-cfg-split",
        dest="cfg_split",
        action="store_false",
        help="keep cond and uncond on every rank (default: half of the ranks each, with an even rank count)",
    )
    group.add_argument(
        "--sp-attention",
        choices=ATTENTION_MODES,
        default="auto",
        help="sequence-parallel attention (auto: Ulysses when the heads divide by the ranks, else ring)",
    )
    group.add_argument(
        "--shard-weights", action="store_true", help="FSDP2-shard the DiT over the ranks (less memory per GPU)"
    )
    group.add_argument("--parallel-timeout", type=float, default=300.0, help="seconds a collective may wait")


def options_from(args: argparse.Namespace) -> ParallelOptions:
    return ParallelOptions(
        cfg_split=args.cfg_split,
        attention=args.sp_attention,
        shard_weights=args.shard_weights,
        timeout_s=args.parallel_timeout,
    )


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started as one of several (WORLD_SIZE > 1)."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in os.environ
