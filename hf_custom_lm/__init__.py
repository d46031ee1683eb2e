"""hf_custom_lm: your own Transformer language model, used like any model shipped in transformers.

Importing the package registers `CustomLMConfig` and the model classes with the Auto classes, so
`AutoConfig`, `AutoModel`, `AutoModelForCausalLM`, `AutoModelForSequenceClassification`,
`AutoModelForQuestionAnswering` and `AutoModelForTokenClassification` resolve `model_type="custom_lm"` folders
without `trust_remote_code`.

Layers, each importing only the ones below it: `cli` -> `hub` -> `training` -> `folders` -> `model`.
"""

import sys

__version__ = "0.1.0"

# Everything loads on first use: the model classes (torch, transformers) once the Auto classes are registered
# below, the other entry points when first named.
_LAZY = {
    "CustomLMConfig": "model",
    "CustomLMPreTrainedModel": "model",
    "CustomLMModel": "model",
    "CustomLMForCausalLM": "model",
    "CustomLMForSequenceClassification": "model",
    "CustomLMForQuestionAnswering": "model",
    "CustomLMForTokenClassification": "model",
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


def register_auto_classes() -> None:
    """Register `CustomLMConfig` and the model classes with the Auto classes (idempotent)."""
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
    )

    AutoConfig.register(CustomLMConfig.model_type, CustomLMConfig, exist_ok=True)
    AutoModel.register(CustomLMConfig, CustomLMModel, exist_ok=True)
    AutoModelForCausalLM.register(CustomLMConfig, CustomLMForCausalLM, exist_ok=True)
    AutoModelForSequenceClassification.register(CustomLMConfig, CustomLMForSequenceClassification, exist_ok=True)
    AutoModelForQuestionAnswering.register(CustomLMConfig, CustomLMForQuestionAnswering, exist_ok=True)
    AutoModelForTokenClassification.register(CustomLMConfig, CustomLMForTokenClassification, exist_ok=True)


# The `hf-custom-lm` command (the top-level module `hf_custom_lm_cli`) imports this package without loading
# torch, so that `--help` answers at once; its jobs register through `folders.load_model`.
if not getattr(sys.modules.get("hf_custom_lm_cli"), "DEFER_AUTO_REGISTRATION", False):
    register_auto_classes()

__all__ = ["register_auto_classes", *_LAZY]
