"""wan_core.sampling: flow-matching schedules, solvers, guidance, Wan2.2 expert switching, the loop."""

from .schedules import Schedule, build_schedule
from .settings import SamplerSettings

__all__ = ["SamplerSettings", "Schedule", "build_schedule"]
