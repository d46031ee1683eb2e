"""hf_custom_lm: your own Transformer language model, used like any model shipped in transformers.

Importing the package registers `CustomLMConfig` and the model classes with the Auto classes, so
`AutoConfig`, `AutoModel`, `AutoModelForCausalLM` and `AutoModelForSequenceClassification` resolve
`model_type="custom_lm"` folders without `trust_remote_code`.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
)

from .configuration_custom_lm import CustomLMConfig
from .modeling_custom_lm import (
    CustomLMForCausalLM,
    CustomLMForSequenceClassification,
    CustomLMModel,
    CustomLMPreTrainedModel,
)
from .tokenization import TOKENIZER_DIR, bundled_corpus_files, load_tokenizer, train_tokenizer

__version__ = "0.1.0"

# Heavier entry points (model card rendering, matplotlib, Hub client) load on first use, so that
# `import hf_custom_lm` stays as light as registering the Auto classes.
_LAZY = {
    "export": "hub",
    "export_run": "hub",
    "push": "hub",
    "from_llama": "llama_export",
    "to_llama": "llama_export",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

AutoConfig.register(CustomLMConfig.model_type, CustomLMConfig, exist_ok=True)
AutoModel.register(CustomLMConfig, CustomLMModel, exist_ok=True)
AutoModelForCausalLM.register(CustomLMConfig, CustomLMForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(CustomLMConfig, CustomLMForSequenceClassification, exist_ok=True)

__all__ = [
    "CustomLMConfig",
    "CustomLMPreTrainedModel",
    "CustomLMModel",
    "CustomLMForCausalLM",
    "CustomLMForSequenceClassification",
    "export",
    "export_run",
    "push",
    "from_llama",
    "to_llama",
    "TOKENIZER_DIR",
    "bundled_corpus_files",
    "load_tokenizer",
    "train_tokenizer",
]
