"""Shared test configuration: CPU only, deterministic, fp32."""

import logging
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if not torch.cuda.is_available():  # Triton kernels run in Triton's interpreter on CPU tensors (before triton loads)
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _let_triton_interpreter_index_with_numpy_2_4() -> None:
    """Triton 3.6's interpreter turns loop bounds into ints with ``int(array)``, which NumPy >= 2.4 refuses
    for 1-element arrays; patch that one conversion (tests only) so kernels with runtime loops interpret."""
    try:
        import triton.runtime.interpreter as interp
    except ImportError:
        return
    original = interp._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interp._patch_lang_tensor = patched


if os.environ.get("TRITON_INTERPRET") == "1":
    _let_triton_interpreter_index_with_numpy_2_4()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
logging.getLogger("diffusers").setLevel(logging.ERROR)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||, in float64."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
