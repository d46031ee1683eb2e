"""The model: exactly the files an exported folder ships to the Hub (configuration, modeling, cache, kernels).

They import only torch, transformers and each other, so the folder loads with `trust_remote_code=True`
where this package is not installed.
"""

from . import modeling_custom_lm
from .configuration_custom_lm import PRESETS, CustomLMConfig
from .modeling_custom_lm import *  # the model classes its `__all__` lists

# The module files `save_pretrained` copies next to the weights for remote code (with `auto_map`).
CODE_FILES = ("configuration_custom_lm.py", "modeling_custom_lm.py", "cache_custom_lm.py", "kernels_custom_lm.py")

__all__ = ["PRESETS", "CODE_FILES", "CustomLMConfig"] + modeling_custom_lm.__all__
