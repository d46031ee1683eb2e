"""Fine-tune a sequence-classification head on a trained CustomLM, with the same Trainer as pre-training.

    finetune_classifier(ClassifierArguments(model_name_or_path="outputs/demo/model", train_file="reviews.csv"),
                        ClassifierTrainingArguments(output_dir="outputs/sentiment"))
    pipeline("text-classification", model="outputs/sentiment")("What a lovely day")

Labels may be any strings (or numbers, read as strings); they are sorted and numbered, and the mapping is
saved as the config's `id2label` / `label2id`, so the pipeline answers with the names.
"""

import logging
from pathlib import Path

from datasets import ClassLabel, DatasetDict
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from .arguments import ClassifierArguments, ClassifierTrainingArguments
from .checkpoints import resolve_resume_checkpoint
from .data import read_dataset
from .finetune_head import check_language_model_folder, load_head_model, train_head
from .metrics import classification_accuracy

logger = logging.getLogger(__name__)

BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json"}


def _builder(path: str, argument: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"`{argument}` {path!r} does not exist.")
    suffixes = [s.lower() for s in file.suffixes if s.lower() not in (".gz", ".bz2", ".xz")]
    builder = BUILDERS.get(suffixes[-1] if suffixes else "")
    if builder is None:
        raise ValueError(f"`{argument}` {path!r} is not a .csv, .json or .jsonl file (optionally compressed).")
    return builder


def _load_split(path: str, split: str):
    builder = _builder(path, f"{split}_file")
    try:
        return read_dataset([path], builder, data_files={split: path}, split=split)
    except ValueError as err:  # e.g. a header-only CSV: datasets names the split, not the file
        raise ValueError(f"Could not read the {split} file {path!r}: {err} Does it hold any rows?") from err


def load_labelled_dataset(args: ClassifierArguments, seed: int = 42) -> tuple[DatasetDict, list[str]]:
    """`{"train", "validation"}` splits with `text` and integer `label` columns, and the label names."""
    files = {"train": args.train_file}
    if args.validation_file:
        files["validation"] = args.validation_file
    splits = DatasetDict({split: _load_split(path, split) for split, path in files.items()})
    for split, dataset in splits.items():
        for column in (args.text_column_name, args.label_column_name):
            if column not in dataset.column_names:
                raise ValueError(
                    f"The {split} file has no column {column!r}; its columns are {dataset.column_names}. "
                    "Set `--text_column_name` / `--label_column_name`."
                )
        if dataset.num_rows == 0:
            raise ValueError(f"The {split} file {files[split]!r} has no rows.")
        splits[split] = dataset.map(
            lambda row: {"text": row[args.text_column_name] or "", "label": str(row[args.label_column_name])},
            remove_columns=dataset.column_names,
        )
    names = sorted(set(splits["train"]["label"]))
    if len(names) < 2:
        raise ValueError(f"The training file has a single label {names}; a classifier needs at least two.")
    if "validation" in splits:
        unseen = sorted(set(splits["validation"]["label"]) - set(names))
        if unseen:
            raise ValueError(f"Validation labels {unseen} never occur in the training file; add examples of them.")
    label_feature = ClassLabel(names=names)
    splits = splits.cast_column("label", label_feature)
    if "validation" not in splits:
        if splits["train"].num_rows < 2:
            raise ValueError("Cannot hold out validation rows from one training row; pass `--validation_file`.")
        held_out = splits["train"].train_test_split(test_size=args.validation_split_percentage / 100, seed=seed)
        splits = DatasetDict({"train": held_out["train"], "validation": held_out["test"]})
    return splits, names


def finetune_classifier(args: ClassifierArguments, training_args: ClassifierTrainingArguments) -> dict[str, float]:
    """Train `score` (and the body) on labelled text; saves a folder `pipeline("text-classification")` loads."""
    check_language_model_folder(args.model_name_or_path)  # named before the data is read
    checkpoint = resolve_resume_checkpoint(training_args)
    splits, names = load_labelled_dataset(args, seed=training_args.seed)
    model, tokenizer = load_head_model(
        args.model_name_or_path, AutoModelForSequenceClassification, num_labels=len(names),
        id2label=dict(enumerate(names)), label2id={name: i for i, name in enumerate(names)},
    )
    max_length = min(args.max_length, model.config.max_position_embeddings)

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    with training_args.main_process_first(desc="tokenizing"):
        encoded = splits.map(tokenize, batched=True, remove_columns=["text"])
    return train_head(model, tokenizer, training_args, checkpoint, encoded["train"], encoded["validation"],
                      DataCollatorWithPadding(tokenizer), classification_accuracy)
