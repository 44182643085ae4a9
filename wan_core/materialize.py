"""Materialising a meta-device module from a checkpoint, one tensor at a time.

Loaders build their model on the meta device, then :func:`materialize` replaces every
parameter and buffer by the tensor of the same name from a :class:`~wan_core.tensor_source.TensorSource`
(read, converted, checked finite and moved one at a time), so a checkpoint never sits in memory twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch

from .checkpoints import guess_kind
from .errors import CheckpointError, NonFiniteError, preview_keys
from .finite import all_finite, count_nonfinite

DTypeRule = Callable[[str, torch.dtype], torch.dtype]


def check_keys(
    required: Iterable[str],
    found: Iterable[str],
    what: str,
    allowed: Iterable[str] = (),
) -> None:
    """Raise a CheckpointError listing missing and unexpected tensor names.

    ``allowed`` are names that may be present without being required.
    """
    required, found = set(required), set(found)
    missing = required - found
    unexpected = found - required - set(allowed)
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} tensors ({preview_keys(missing)})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} tensors ({preview_keys(unexpected)})")
    raise CheckpointError(
        f"The weights do not fit {what}: {'; '.join(parts)}. The file looks like "
        f"{guess_kind(found)}. Load it with the matching loader, or re-download a complete file."
    )


def materialize(
    module: torch.nn.Module,
    src: Mapping[str, torch.Tensor],
    *,
    device: torch.device | str = "cpu",
    dtype_rule: DTypeRule | None = None,
    what: str = "the model",
    optional: Iterable[str] = (),
) -> None:
    """Replace every meta parameter/buffer of ``module`` by the tensor of the same name in ``src``.

    Tensors are read, converted and moved one at a time, so peak memory is the
    final model plus one tensor. ``dtype_rule(name, stored_dtype)`` picks each
    tensor's dtype (default: keep the stored dtype). Names in ``optional`` may be
    absent (they keep their initial value, which must not be on the meta device).
    """
    targets: dict[str, torch.Tensor] = dict(module.named_parameters(remove_duplicate=False))
    targets.update(dict(module.named_buffers(remove_duplicate=False)))
    optional = set(optional)
    required = {k for k in targets if k not in optional}
    found = set(src.keys())
    check_keys(required, found, what, allowed=optional)
    for name in targets:
        if name not in found:
            continue
        stored = src[name]
        want = dtype_rule(name, stored.dtype) if dtype_rule else stored.dtype
        tensor = stored.to(device=device, dtype=want)
        if not all_finite(tensor):  # one cheap reduction per tensor, on the target device
            raise _nonfinite_weight(name, what, getattr(src, "description", "the checkpoint"), stored, want)
        _assign(module, name, tensor)


def _nonfinite_weight(name: str, what: str, where: str, stored: torch.Tensor, want: torch.dtype) -> NonFiniteError:
    """The error for a NaN/Inf weight: damaged in the file, or finite there and overflowing ``want``."""
    if all_finite(stored):
        return NonFiniteError(
            f"Tensor {name!r} of {what} ({where}) is finite in the file but overflows {want} when converted: "
            "load the model in bf16 or fp32 instead."
        )
    return NonFiniteError(
        f"Tensor {name!r} of {what} ({where}) holds {count_nonfinite(stored)} NaN/Inf values: the file is "
        "damaged. Re-download it (or re-export it, if you made it)."
    )


def _assign(module: torch.nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    old = getattr(owner, leaf)
    if tuple(old.shape) != tuple(tensor.shape):
        raise CheckpointError(
            f"Tensor {name!r} has shape {tuple(tensor.shape)} but the model built from this "
            f"checkpoint's config expects {tuple(old.shape)}. The file mixes two model sizes: "
            "re-download it, or load the shards of one model only."
        )
    if leaf in owner._parameters:
        owner._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)
    else:
        owner._buffers[leaf] = tensor
