"""Step caching: fewer DiT calls by reusing what earlier steps computed (EasyCache, MagCache, TeaCache).

    from wan_core.sampling import SamplerSettings
    from wan_core.sampling.cache import EasyCacheSettings
    settings = SamplerSettings(steps=50, cache=EasyCacheSettings(reuse_threshold=0.2))

The loop builds a :class:`CacheRun` per sampling call; every run reports which steps ran the DiT
(:class:`StepReport`, sent to ``RunHooks.on_report``).
"""

from .curves import load_calibration, magcache_curve_names, teacache_names
from .report import StepRecord, StepReport
from .run import CacheRun
from .settings import (
    CacheSettings,
    EasyCacheSettings,
    MagCacheSettings,
    TeaCacheSettings,
    cache_from_dict,
    parse_cache_spec,
)

__all__ = [
    "CacheRun",
    "CacheSettings",
    "EasyCacheSettings",
    "MagCacheSettings",
    "StepRecord",
    "StepReport",
    "TeaCacheSettings",
    "cache_from_dict",
    "load_calibration",
    "magcache_curve_names",
    "parse_cache_spec",
    "teacache_names",
]
