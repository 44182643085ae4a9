"""wan_core.sampling: flow-matching schedules, solvers, guidance, Wan2.2 expert switching, the loop.

settings = SamplerSettings(steps=50, shift=5.0, cfg=5.0, solver="unipc", seed=0)
latent = sample(dit_or_experts, positive, negative, conditioning, settings, hooks=hooks, device=device)
"""

from .experts import Experts
from .loop import sample
from .noise import seeded_noise
from .preview import latent_preview
from .schedules import Schedule, build_schedule, shift_sigmas
from .settings import SamplerSettings

__all__ = [
    "Experts",
    "SamplerSettings",
    "Schedule",
    "build_schedule",
    "latent_preview",
    "sample",
    "seeded_noise",
    "shift_sigmas",
]
