"""What fine-tuning a head (sequence classification, question answering, tagging) on a trained CustomLM shares:
the language model folder loaded through the one loading path, validation rows held out when no file is given,
and one Trainer run that saves a folder the head's Auto class (and pipeline) loads."""

import random
from pathlib import Path

from ..folders import (
    check_vocab_fits,
    load_model,
    load_tokenizer_from,
    save_model_folder,
)
from .trainer import build_trainer


def check_language_model_folder(model_name_or_path: str) -> None:
    if not Path(model_name_or_path).is_dir():
        raise FileNotFoundError(
            f"`model_name_or_path` {model_name_or_path!r} is not a folder; pass a trained language-model folder."
        )


def load_head_model(model_name_or_path: str, auto_class, **config_kwargs):
    """(model, tokenizer): `auto_class` on a trained LM folder (the new head randomly initialised), its tokenizer."""
    check_language_model_folder(model_name_or_path)
    tokenizer = load_tokenizer_from(model_name_or_path)
    model = load_model(model_name_or_path, auto_class, **config_kwargs)
    check_vocab_fits(tokenizer, model.config)
    return model, tokenizer


def read_text(path: str, argument: str) -> str:
    """The text of the file `argument` (`train_file`, `validation_file`) names, refused by name when it is missing
    or not UTF-8."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"`{argument}` {path!r} does not exist.")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"`{argument}` {path!r} is not UTF-8 text ({err}); save it with UTF-8 encoding.") from err


def read_rows(args, read, seed: int) -> tuple[list, list]:
    """(train, validation): `read(path, argument)` of `args.train_file` and `args.validation_file`, or without a
    validation file, `args.validation_split_percentage` percent of the training rows held out."""
    train_rows = read(args.train_file, "train_file")
    if args.validation_file:
        return train_rows, read(args.validation_file, "validation_file")
    return hold_out(train_rows, args.validation_split_percentage, seed)


def hold_out(rows: list, percentage: float, seed: int) -> tuple[list, list]:
    """(train, validation): `percentage` percent of `rows` (at least one) drawn at random for validation."""
    if len(rows) < 2:
        raise ValueError("Cannot hold out validation rows from one training row; pass `--validation_file`.")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    size = min(len(rows) - 1, max(1, round(len(rows) * percentage / 100)))
    return [rows[i] for i in order[size:]], [rows[i] for i in order[:size]]


def train_head(model, tokenizer, training_args, checkpoint, train_dataset, eval_dataset, data_collator,
               compute_metrics) -> dict[str, float]:
    """Train with `CustomLMTrainer` (non-finite-loss stop, early stopping, resume), evaluate, save the folder."""
    trainer = build_trainer(
        model, training_args, tokenizer, train_dataset, eval_dataset, data_collator, checkpoint,
        compute_metrics=compute_metrics, language_model_metrics=False,
    )
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_metrics("train", train_result.metrics)
    eval_metrics = trainer.evaluate()
    trainer.save_metrics("eval", eval_metrics)
    trainer.save_state()
    if training_args.should_save:
        save_model_folder(trainer.model, tokenizer, training_args.output_dir, training_args)
    return {**train_result.metrics, **eval_metrics}
