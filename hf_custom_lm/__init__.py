"""hf_custom_lm: your own Transformer language model, used like any model shipped in transformers.

Importing the package registers `CustomLMConfig` and the model classes with the Auto classes, so
`AutoConfig`, `AutoModel`, `AutoModelForCausalLM`, `AutoModelForSequenceClassification`,
`AutoModelForQuestionAnswering` and `AutoModelForTokenClassification` resolve `model_type="custom_lm"` folders
without `trust_remote_code`.

Layers, each importing only the ones below it: `cli` -> `hub` -> `training` -> `loading` -> `model`.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .model import (
    CustomLMConfig,
    CustomLMForCausalLM,
    CustomLMForQuestionAnswering,
    CustomLMForSequenceClassification,
    CustomLMForTokenClassification,
    CustomLMModel,
    CustomLMPreTrainedModel,
)

__version__ = "0.1.0"

# Entry points beyond the model load on first use, so that `import hf_custom_lm` stays as light as
# registering the Auto classes.
_LAZY = {
    "export": "hub.export",
    "export_run": "hub.export",
    "push": "hub.push",
    "from_llama": "hub.llama",
    "to_llama": "hub.llama",
    "TOKENIZER_DIR": "training.tokenization",
    "bundled_corpus_files": "training.tokenization",
    "load_tokenizer": "training.tokenization",
    "train_tokenizer": "training.tokenization",
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
AutoModelForQuestionAnswering.register(CustomLMConfig, CustomLMForQuestionAnswering, exist_ok=True)
AutoModelForTokenClassification.register(CustomLMConfig, CustomLMForTokenClassification, exist_ok=True)

__all__ = [
    "CustomLMConfig",
    "CustomLMPreTrainedModel",
    "CustomLMModel",
    "CustomLMForCausalLM",
    "CustomLMForSequenceClassification",
    "CustomLMForQuestionAnswering",
    "CustomLMForTokenClassification",
    *_LAZY,
]
