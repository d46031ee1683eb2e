"""`export` / `export_run` / `hf-custom-lm export`: a complete folder, and clear errors on bad input."""

import filecmp
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import hf_custom_lm
from hf_custom_lm import CustomLMForCausalLM, CustomLMForSequenceClassification
from hf_custom_lm.cli import main as cli_main
from hf_custom_lm.hub import export, export_run
from hf_custom_lm.model import CODE_FILES

from .builders import tiny_model

PACKAGE_DIR = Path(hf_custom_lm.__file__).parent / "model"


def test_export_writes_a_complete_folder(tmp_path, tokenizer):
    model = tiny_model(tokenizer)
    folder = export(model, tokenizer, tmp_path / "export", repo_id="someone/tiny-lm")

    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            *CODE_FILES, "README.md"} <= names
    for code in CODE_FILES:  # the package's own
        assert filecmp.cmp(folder / code, PACKAGE_DIR / code, shallow=False)
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_custom_lm.CustomLMConfig",
        "AutoModel": "modeling_custom_lm.CustomLMModel",
        "AutoModelForCausalLM": "modeling_custom_lm.CustomLMForCausalLM",
        "AutoModelForSequenceClassification": "modeling_custom_lm.CustomLMForSequenceClassification",
        "AutoModelForQuestionAnswering": "modeling_custom_lm.CustomLMForQuestionAnswering",
        "AutoModelForTokenClassification": "modeling_custom_lm.CustomLMForTokenClassification",
    }
    generation = json.loads((folder / "generation_config.json").read_text())
    assert (generation["eos_token_id"], generation["pad_token_id"]) == (tokenizer.eos_token_id, tokenizer.pad_token_id)

    loaded = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer("Once upon a time", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert AutoTokenizer.from_pretrained(folder)("Once upon a time").input_ids == ids[0].tolist()


def test_export_leaves_classes_and_config_as_they_were(tmp_path, tokenizer, monkeypatch):
    model = tiny_model(tokenizer)
    # `register_for_auto_class` is process-wide class state: start this test from the unregistered one.
    monkeypatch.setattr(CustomLMForCausalLM, "_auto_class", None)
    monkeypatch.setattr(type(model.config), "_auto_class", None)
    export(model, tokenizer, tmp_path / "export")
    assert CustomLMForCausalLM._auto_class is None and type(model.config)._auto_class is None
    assert getattr(model.config, "auto_map", None) is None
    model.save_pretrained(tmp_path / "plain")  # e.g. a later checkpoint: no code files, no auto_map
    assert not list((tmp_path / "plain").glob("*.py"))
    assert "auto_map" not in json.loads((tmp_path / "plain" / "config.json").read_text())


def test_export_refuses_an_existing_export_unless_overwrite(tmp_path, tokenizer):
    model = tiny_model(tokenizer)
    folder = export(model, tokenizer, tmp_path / "export")
    (folder / "checkpoint-2").mkdir()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export(model, tokenizer, folder, format="llama")
    export(model, tokenizer, folder, format="llama", overwrite=True)
    assert not list(folder.glob("*.py"))  # no code file of the earlier format survives
    assert "auto_map" not in json.loads((folder / "config.json").read_text())
    assert (folder / "checkpoint-2").is_dir()  # what export does not write is left alone


def test_export_rejects_bad_input(tmp_path, tokenizer):
    model = tiny_model(tokenizer)
    with pytest.raises(ValueError, match="'onnx'"):
        export(model, tokenizer, tmp_path / "a", format="onnx")
    with pytest.raises(ValueError, match=f"`vocab_size` is {len(tokenizer) - 8}"):
        export(tiny_model(tokenizer, vocab_size=len(tokenizer) - 8), tokenizer, tmp_path / "b")
    wrong_eos = tiny_model(tokenizer, eos_token_id=1)
    with pytest.raises(ValueError, match=r"eos token id \(0\)"):
        export(wrong_eos, tokenizer, tmp_path / "c")
    classifier = CustomLMForSequenceClassification(model.config)
    with pytest.raises(TypeError, match="CustomLMForSequenceClassification"):
        export(classifier, tokenizer, tmp_path / "d")
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_export_run_of_a_saved_model_folder(tmp_path, tokenizer):
    model = tiny_model(tokenizer)
    model.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")
    folder = export_run(tmp_path / "saved", tmp_path / "export")
    assert not (folder / "loss_curve.png").exists()  # no training record, no curve
    readme = (folder / "README.md").read_text()
    assert "The training run was not recorded with this export." in readme
    assert "No evaluation results were recorded" in readme


def test_export_run_errors_name_the_problem(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        export_run(tmp_path / "missing", tmp_path / "out")
    run = tmp_path / "run"
    (run / "checkpoint-4").mkdir(parents=True)
    (run / "checkpoint-10").mkdir()
    with pytest.raises(FileNotFoundError, match=r"checkpoint-4, checkpoint-10.*run may not have finished"):
        export_run(run, tmp_path / "out")
    tiny_model(tokenizer).save_pretrained(tmp_path / "no_tokenizer")
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        export_run(tmp_path / "no_tokenizer", tmp_path / "out")


def test_cli_export(tmp_path, tokenizer, capsys):
    model = tiny_model(tokenizer)
    model.save_pretrained(tmp_path / "saved")
    tokenizer.save_pretrained(tmp_path / "saved")

    assert cli_main(["export", str(tmp_path / "saved"), str(tmp_path / "llama"), "--format", "llama",
                     "--repo-id", "someone/tiny-llama", "--license", "mit", "--datasets", "someone/stories"]) == 0
    assert json.loads((tmp_path / "llama" / "config.json").read_text())["model_type"] == "llama"
    readme = (tmp_path / "llama" / "README.md").read_text()
    assert "license: mit" in readme and "- someone/stories" in readme and '"someone/tiny-llama"' in readme

    assert cli_main(["export", str(tmp_path / "saved"), str(tmp_path / "llama")]) == 2  # bad input, as argparse
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse refuses a format that is not a choice
        cli_main(["export", str(tmp_path / "saved"), str(tmp_path / "x"), "--format", "onnx"])
