"""Fine-tuning a classification head on a trained language model; the result runs in the pipeline."""

import csv
import json

import pytest
from transformers import pipeline

from hf_custom_lm.training.arguments import ClassifierArguments, ClassifierTrainingArguments
from hf_custom_lm.cli import main as cli
from hf_custom_lm.training.finetune_classifier import finetune_classifier, load_labelled_dataset
from hf_custom_lm.training import train_language_model

from .test_training import data_arguments, model_arguments, tokenizer_dir, training_arguments  # noqa: F401

POSITIVE = ["a lovely happy day", "wonderful kind friends", "I love this good book", "great joy and delight"]
NEGATIVE = ["a terrible sad day", "awful cruel enemies", "I hate this bad book", "grim misery and pain"]


@pytest.fixture(scope="module")
def language_model(tmp_path_factory, tokenizer_dir):
    """A tiny LM folder, as training writes it."""
    tmp_path = tmp_path_factory.mktemp("lm")
    args = training_arguments(tmp_path, max_steps=4, eval_steps=4, save_steps=4)
    train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args)
    return str(tmp_path / "run")


def write_labelled_csv(path, rows=48):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(rows):
            source, label = (POSITIVE, "positive") if i % 2 else (NEGATIVE, "negative")
            writer.writerow([source[(i // 2) % 4], label])
    return str(path)


def classifier_training_arguments(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "classifier"), max_steps=24, eval_steps=12, save_steps=12, logging_steps=4,
        per_device_train_batch_size=8, learning_rate=3e-3, warmup_steps=0, report_to=[], disable_tqdm=True,
        bf16=False, seed=0, early_stopping_patience=0,
    )
    return ClassifierTrainingArguments(**{**values, **overrides})


@pytest.mark.slow
def test_finetune_classifier_command_gives_a_pipeline_with_the_label_names(tmp_path, language_model):
    out = tmp_path / "classifier"
    status = cli([
        "finetune-classifier", "--model_name_or_path", language_model,
        "--train_file", write_labelled_csv(tmp_path / "labelled.csv"), "--output_dir", str(out),
        "--max_steps", "24", "--eval_steps", "12", "--save_steps", "12", "--logging_steps", "4",
        "--per_device_train_batch_size", "8", "--learning_rate", "3e-3", "--warmup_steps", "0",
        "--report_to", "none", "--disable_tqdm", "true", "--bf16", "false", "--seed", "0",
    ])
    assert status == 0
    metrics = json.loads((out / "eval_results.json").read_text())
    assert "eval_accuracy" in metrics and "eval_perplexity" not in metrics
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["auto_map"]["AutoModelForSequenceClassification"].endswith("CustomLMForSequenceClassification")

    classifier = pipeline("text-classification", model=str(out))
    predictions = classifier(["a lovely happy day", "a terrible sad day"])
    assert [p["label"] for p in predictions] == ["positive", "negative"]
    assert metrics["eval_accuracy"] == 1.0  # the held-out rows repeat the training phrases


def test_labelled_jsonl_with_own_columns_and_validation_file(tmp_path):
    rows = [{"review": t, "stars": "5"} for t in POSITIVE] + [{"review": t, "stars": "1"} for t in NEGATIVE]
    for name in ("train.jsonl", "val.jsonl"):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ClassifierArguments(
        model_name_or_path=str(tmp_path), train_file=str(tmp_path / "train.jsonl"),
        validation_file=str(tmp_path / "val.jsonl"), text_column_name="review", label_column_name="stars",
    )
    splits, names = load_labelled_dataset(args)
    assert names == ["1", "5"] and splits["validation"].num_rows == 8
    assert splits["train"].features["label"].names == ["1", "5"]


@pytest.mark.parametrize(
    "rows, match",
    [
        ([{"text": "a", "label": "x"}, {"text": "b", "label": "x"}], "single label"),
        ([{"text": "a", "sentiment": "x"}], r"no column 'label'.*label_column_name"),
    ],
)
def test_bad_labelled_files_are_refused(tmp_path, rows, match):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=match):
        load_labelled_dataset(ClassifierArguments(model_name_or_path=str(tmp_path), train_file=str(path)))


def test_missing_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_name_or_path"):
        finetune_classifier(
            ClassifierArguments(model_name_or_path=str(tmp_path / "no_lm"), train_file="x.csv"),
            classifier_training_arguments(tmp_path),
        )
    with pytest.raises(FileNotFoundError, match="train_file"):
        load_labelled_dataset(ClassifierArguments(model_name_or_path=str(tmp_path), train_file="missing.csv"))
