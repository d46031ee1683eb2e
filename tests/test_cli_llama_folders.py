"""Subcommands that take a model folder accept a plain Llama folder (`export --format llama`) as well as our own."""

import json

import pytest
from transformers import AutoModelForSequenceClassification, LlamaForSequenceClassification

from hf_custom_lm.cli import main as cli
from hf_custom_lm.hub import export

from .builders import tiny_model
from .conftest import SAMPLE_TEXT
from .test_classification import write_labelled_csv


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("llama") / "model"
    return str(export(tiny_model(tokenizer), tokenizer, folder, format="llama"))


def test_generate_runs_on_a_llama_folder(llama_folder, capsys):
    status = cli(["generate", llama_folder, "--prompt", "Once upon", "--max_new_tokens", "4", "--do_sample", "false"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.out.startswith("Once upon")


def test_evaluate_runs_on_a_llama_folder(llama_folder, tmp_path, capsys):
    text = tmp_path / "held_out.txt"
    text.write_text("\n".join(SAMPLE_TEXT))
    status = cli(["evaluate", llama_folder, "--file", str(text), "--block_size", "32"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert json.loads(captured.out)["perplexity"] > 1


@pytest.mark.slow
def test_finetune_classifier_on_a_llama_folder_saves_a_plain_llama_classifier(llama_folder, tmp_path, capsys):
    out = tmp_path / "classifier"
    status = cli([
        "finetune-classifier", "--model_name_or_path", llama_folder,
        "--train_file", write_labelled_csv(tmp_path / "labelled.csv", rows=16), "--output_dir", str(out),
        "--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--per_device_train_batch_size", "4",
        "--report_to", "none", "--disable_tqdm", "true", "--bf16", "false", "--early_stopping_patience", "0",
    ])
    assert status == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())
    assert "auto_map" not in config and not list(out.glob("*.py"))  # transformers' own class: no remote code
    assert type(AutoModelForSequenceClassification.from_pretrained(out)) is LlamaForSequenceClassification
