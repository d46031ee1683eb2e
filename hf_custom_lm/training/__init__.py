"""Training: run arguments, data loading and packing, tokenizer training, the Trainer and its callbacks,
checkpoints, metrics, embedding initialisation, and classification fine-tuning.

    metrics = train_language_model(ModelArguments(), DataArguments(), LMTrainingArguments(output_dir="out"))
"""

from .arguments import DataArguments, LMTrainingArguments, ModelArguments
from .callbacks import NonFiniteLossError, build_callbacks
from .checkpoints import is_complete_checkpoint, last_complete_checkpoint, resolve_resume_checkpoint
from .language_model import (
    build_config,
    build_model,
    check_output_dir,
    evaluate_language_model,
    parse_config_overrides,
    train_language_model,
)
from .trainer import CustomLMTrainer

__all__ = [
    "ModelArguments",
    "DataArguments",
    "LMTrainingArguments",
    "NonFiniteLossError",
    "build_callbacks",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "resolve_resume_checkpoint",
    "build_config",
    "build_model",
    "check_output_dir",
    "evaluate_language_model",
    "parse_config_overrides",
    "train_language_model",
    "CustomLMTrainer",
]
