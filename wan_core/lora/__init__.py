"""LoRA for Wan DiTs: every format in the wild, merged or on the fly, per expert.

lora = load_lora(path_or_state_dict)                       # -> LoraWeights (official names)
report = apply_lora(dit, lora, strength=1.0, mode="merge" | "runtime", blocks=None)
report.set_strength(0.5)                                   # no reload
remove_lora(dit, report)
reports = apply_lora_stack(dit, [LoraSpec(path, 1.0, strength_low=0.5)], expert="high")
"""

from .apply import LoraReport, apply_lora, block_predicate, plan_lora, remove_lora
from .handle import LoraHandle, RuntimeAdapter
from .keys import diffusers_to_official_path, official_to_diffusers_path, underscore_table
from .stack import LoraSpec, apply_lora_stack
from .weights import LoraDelta, LoraWeights, load_lora, load_lora_cached

__all__ = [
    "LoraDelta",
    "LoraHandle",
    "LoraReport",
    "LoraSpec",
    "LoraWeights",
    "RuntimeAdapter",
    "apply_lora",
    "apply_lora_stack",
    "block_predicate",
    "diffusers_to_official_path",
    "load_lora",
    "load_lora_cached",
    "official_to_diffusers_path",
    "plan_lora",
    "remove_lora",
    "underscore_table",
]
