"""The model: exactly the files an exported folder ships to the Hub (configuration, modeling, cache, kernels).

They import only torch, transformers and each other, so the folder loads with `trust_remote_code=True`
where this package is not installed.
"""

from .configuration_custom_lm import PRESETS, CustomLMConfig
from .modeling_custom_lm import (
    CustomLMForCausalLM,
    CustomLMForQuestionAnswering,
    CustomLMForSequenceClassification,
    CustomLMForTokenClassification,
    CustomLMModel,
    CustomLMPreTrainedModel,
)

# The module files `save_pretrained` copies next to the weights for remote code (with `auto_map`).
CODE_FILES = ("configuration_custom_lm.py", "modeling_custom_lm.py", "cache_custom_lm.py", "kernels_custom_lm.py")

__all__ = [
    "PRESETS",
    "CODE_FILES",
    "CustomLMConfig",
    "CustomLMPreTrainedModel",
    "CustomLMModel",
    "CustomLMForCausalLM",
    "CustomLMForSequenceClassification",
    "CustomLMForQuestionAnswering",
    "CustomLMForTokenClassification",
]
