"""Fine-tune a token-classification head (named entities, parts of speech, any tags) on a trained CustomLM.

    finetune_token_classifier(TokenClassifierArguments(model_name_or_path="outputs/demo/model", train_file="ner.txt"),
                              TokenClassifierTrainingArguments(output_dir="outputs/ner"))
    pipeline("token-classification", model="outputs/ner", aggregation_strategy="first")("Ada lives in Paris")

Data: CoNLL-style text (a token and its tag per line, the tag in the last column, so CoNLL-2003's four columns
work too; a blank line between sentences; `-DOCSTART-` lines skipped), or .json/.jsonl rows with `tokens` and
`tags` lists. Tags may be any strings; they are sorted and saved as the config's `id2label`.

The words of a sentence are joined with spaces and tokenised as running text, so training sees the same
tokens as the pipeline does; the first token of each word carries the word's tag, the others -100 (ignored),
as in transformers' token-classification examples.
"""

import json
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset
from transformers import (
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
)

from .arguments import ClassifierTrainingArguments, HeadArguments, _default
from .checkpoints import resolve_resume_checkpoint
from .finetune_head import load_head_model, read_rows, read_text, train_head

JSON_SUFFIXES = (".json", ".jsonl")


@dataclass
class TokenClassifierArguments(HeadArguments):
    train_file: str = field(
        metadata={"help": "CoNLL-style text (token ... tag per line, blank line between sentences), or "
                          ".json/.jsonl rows with `tokens` and `tags` lists."}
    )


@dataclass
class TokenClassifierTrainingArguments(ClassifierTrainingArguments):
    output_dir: str | None = _default("output_dir", "outputs/token-classifier")


def _conll_rows(lines: list[str], where: str) -> list[dict]:
    rows, tokens, tags = [], [], []
    for number, line in enumerate(lines + [""], 1):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if tokens:
                rows.append({"tokens": tokens, "tags": tags})
            tokens, tags = [], []
        elif len(columns) < 2:
            raise ValueError(f"{where} line {number} ({line.strip()!r}) has a token but no tag; write the token, "
                             "then its tag, separated by whitespace (a blank line between sentences).")
        else:
            tokens.append(columns[0])
            tags.append(columns[-1])
    return rows


def _json_rows(text: str, where: str) -> list[dict]:
    try:
        document = json.loads(text)
        rows = document if isinstance(document, list) else [document]
    except json.JSONDecodeError:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{where} line {number} is not JSON ({err}); write one object with `tokens` "
                                     "and `tags` lists per line.") from err
    for number, row in enumerate(rows, 1):
        tokens, tags = (row.get(k) if isinstance(row, dict) else None for k in ("tokens", "tags"))
        if not isinstance(tokens, list) or not isinstance(tags, list) or len(tokens) != len(tags):
            raise ValueError(f"{where} row {number} needs `tokens` and `tags`: two lists of the same length, one "
                             "tag per token.")
    return [{"tokens": [str(t) for t in row["tokens"]], "tags": [str(t) for t in row["tags"]]} for row in rows]


def read_tagged_file(path: str, argument: str = "train_file") -> list[dict]:
    """Sentences `{"tokens": [...], "tags": [...]}` of a CoNLL-style or JSON (lines) file."""
    where = f"`{argument}` {path!r}"
    text = read_text(path, argument)
    is_json = Path(path).suffix.lower() in JSON_SUFFIXES
    rows = [r for r in (_json_rows(text, where) if is_json else _conll_rows(text.splitlines(), where)) if r["tokens"]]
    if not rows:
        raise ValueError(f"{where} holds no tagged sentences.")
    return rows


def token_classification_features(rows: list[dict], tokenizer, label2id: dict[str, int], max_length: int) -> dict:
    """`input_ids`, `attention_mask` and `labels` (the word's tag id on its first token, -100 elsewhere)."""
    texts = [" ".join(row["tokens"]) for row in rows]
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True)
    labels = []
    for text, row, offsets in zip(texts, rows, encoded["offset_mapping"]):
        word_starts = np.cumsum([0] + [len(word) + 1 for word in row["tokens"]]).tolist()
        row_labels, previous = [], None
        for start, end in offsets:
            start += len(text[start:end]) - len(text[start:end].lstrip())  # byte-level offsets include a space
            word = bisect_right(word_starts, start) - 1 if end > start else None
            row_labels.append(label2id[row["tags"][word]] if word is not None and word != previous else -100)
            previous = word if word is not None else previous
        labels.append(row_labels)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "labels": labels}


def tagging_accuracy(eval_prediction) -> dict[str, float]:
    """`compute_metrics`: the share of tagged tokens (labels != -100) whose arg-max label is right."""
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    tagged = labels != -100
    return {"accuracy": float((logits.argmax(-1)[tagged] == labels[tagged]).mean())}


def finetune_token_classifier(args: TokenClassifierArguments,
                              training_args: TokenClassifierTrainingArguments) -> dict[str, float]:
    """Train `score` (and the body) on tagged sentences; saves a folder `pipeline("token-classification")` loads."""
    checkpoint = resolve_resume_checkpoint(training_args)
    train_rows, validation_rows = read_rows(args, read_tagged_file, training_args.seed)
    names = sorted({tag for row in train_rows for tag in row["tags"]})
    if len(names) < 2:
        raise ValueError(f"`train_file` {args.train_file!r} has a single tag {names}; a tagger needs at least two.")
    unseen = sorted({tag for row in validation_rows for tag in row["tags"]} - set(names))
    if unseen:
        raise ValueError(f"Validation tags {unseen} never occur in `train_file` {args.train_file!r}; add sentences "
                         "that use them.")
    label2id = {name: i for i, name in enumerate(names)}
    model, tokenizer = load_head_model(
        args.model_name_or_path, AutoModelForTokenClassification, num_labels=len(names),
        id2label=dict(enumerate(names)), label2id=label2id,
    )
    max_length = min(args.max_length, model.config.max_position_embeddings)
    train, validation = (
        Dataset.from_dict(token_classification_features(rows, tokenizer, label2id, max_length))
        for rows in (train_rows, validation_rows)
    )
    return train_head(model, tokenizer, training_args, checkpoint, train, validation,
                      DataCollatorForTokenClassification(tokenizer), tagging_accuracy)
