"""`hf-custom-lm train / evaluate / generate`: YAML configs with command-line overrides, unknown keys
refused, the shipped configs valid, and one end-to-end run through the command line."""

import json
from pathlib import Path

import pytest
import yaml

from hf_custom_lm.model import modeling_custom_lm
from hf_custom_lm.cli import main as cli
from hf_custom_lm.cli.train import parse_train_args

from .test_training import tokenizer_dir, write_corpus  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
RUN_CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
ACCELERATE_CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))


def write_yaml(path, values):
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_yaml_values_are_defaults_and_flags_override_them(tmp_path):
    config = write_yaml(tmp_path / "run.yaml", {
        "learning_rate": 0.01, "block_size": 64, "config_overrides": "num_hidden_layers=3",
        "report_to": [], "early_stopping_patience": 5, "bf16": False, "train_file": "a.txt",
    })
    model_args, data_args, training_args = parse_train_args(
        ["--config", config, "--learning_rate", "0.02", "--output_dir", str(tmp_path / "out"), "--block_size", "16"]
    )
    assert training_args.learning_rate == 0.02 and data_args.block_size == 16  # flags win
    assert model_args.config_overrides == "num_hidden_layers=3" and data_args.train_file == "a.txt"  # from YAML
    assert training_args.early_stopping_patience == 5 and training_args.report_to == [] and training_args.bf16 is False
    assert training_args.output_dir == str(tmp_path / "out")
    assert training_args.lr_scheduler_type == "cosine"  # our default, neither in YAML nor on the line


def test_unknown_yaml_key_is_refused_with_a_suggestion(tmp_path, capsys):
    config = write_yaml(tmp_path / "run.yaml", {"learnin_rate": 0.01})
    assert cli(["train", "--config", config]) == 2
    error = capsys.readouterr().err
    assert "Unknown key 'learnin_rate'" in error and "learning_rate" in error


def test_unknown_flag_is_refused(capsys):
    assert cli(["train", "--learnin_rate", "0.1"]) == 2
    assert "--learnin_rate" in capsys.readouterr().err


def test_missing_config_file_is_reported(tmp_path, capsys):
    assert cli(["train", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err


@pytest.mark.parametrize("config", RUN_CONFIGS, ids=[p.name for p in RUN_CONFIGS])
def test_shipped_run_configs_parse(config):
    model_args, data_args, training_args = parse_train_args(["--config", str(config)])
    assert training_args.load_best_model_at_end and training_args.early_stopping_patience > 0
    assert training_args.save_steps % training_args.eval_steps == 0


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=[p.name for p in ACCELERATE_CONFIGS])
def test_shipped_accelerate_configs_load(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    assert loaded.num_processes == 2
    if loaded.fsdp_config:
        assert loaded.fsdp_config["fsdp_version"] == 2
        assert hasattr(modeling_custom_lm, loaded.fsdp_config["fsdp_transformer_layer_cls_to_wrap"])
    if loaded.deepspeed_config:
        settings = json.loads((ROOT / loaded.deepspeed_config["deepspeed_config_file"]).read_text())
        assert settings["zero_optimization"]["stage"] in (2, 3)
    assert {p.name for p in ACCELERATE_CONFIGS} >= {"ddp.yaml", "fsdp2.yaml", "deepspeed_zero2.yaml",
                                                    "deepspeed_zero3.yaml"}


def test_train_evaluate_generate_through_the_command_line(tmp_path, tokenizer_dir, capsys):
    train, validation = write_corpus(tmp_path)
    out = str(tmp_path / "run")
    status = cli([
        "train", "--config", str(ROOT / "configs" / "demo.yaml"), "--config_name", "tiny", "--config_overrides", "",
        "--tokenizer_name", tokenizer_dir, "--train_file", train, "--validation_file", validation,
        "--block_size", "32", "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "2",
        "--per_device_train_batch_size", "4", "--output_dir", out, "--report_to", "none", "--disable_tqdm", "true",
        "--cache_dir", str(tmp_path / "cache"), "--bf16", "false",
    ])
    assert status == 0
    printed = capsys.readouterr().out
    assert "validation loss" in printed and "bits per byte" in printed

    assert cli(["evaluate", out, "--file", validation, "--block_size", "32"]) == 0
    scored = json.loads(capsys.readouterr().out)
    eval_loss = json.loads((tmp_path / "run" / "eval_results.json").read_text())["eval_loss"]
    assert scored["loss"] == pytest.approx(eval_loss, abs=1e-4)
    assert set(scored) == {"loss", "perplexity", "bits_per_byte", "tokens"}
    # blocks of many short documents score otherwise when their later documents see the earlier ones
    (tmp_path / "short").mkdir()
    _, short = write_corpus(tmp_path / "short", doc_chars=100)
    losses = []
    for flag in ([], ["--no_document_masking"]):
        assert cli(["evaluate", out, "--file", short, "--block_size", "32", *flag]) == 0
        losses.append(json.loads(capsys.readouterr().out)["loss"])
    assert losses[0] != pytest.approx(losses[1], abs=1e-4)

    assert cli(["generate", out, "--prompt", "It is", "--max_new_tokens", "5", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("It is")


def test_bad_input_is_reported_without_a_traceback(tmp_path, capsys):
    status = cli(["train", "--train_file", str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "o"),
                  "--report_to", "none"])
    assert status == 2
    assert "missing.txt" in capsys.readouterr().err
    assert cli(["evaluate", str(tmp_path / "no_model"), "--file", "x.txt"]) == 2
