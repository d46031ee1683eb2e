"""The saved help of every subcommand (`hf_custom_lm/cli/help/*.json`, answered without importing
transformers) is what the live parser prints and accepts, and unknown flags get the same one-line error from
the saved flags as from the live parser."""

import pytest

from hf_custom_lm.cli import SUBCOMMANDS, help_cache
from hf_custom_lm.cli.common import parse_with_config
from hf_custom_lm.cli.train import ARGUMENT_TYPES

REWRITE = "saved help is stale: rewrite it with `make cli-help`"


@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_saved_help_is_the_live_parsers(command):
    saved = help_cache.load(command)
    assert saved is not None, f"no saved help of {command!r} for {help_cache.versions()}; {REWRITE}"
    live = help_cache.live(command)
    assert saved["flags"] == live["flags"], REWRITE
    assert saved["help"] == live["help"], REWRITE


def test_help_is_answered_from_the_saved_text(capsys):
    assert help_cache.answer("train", ["--output_dir", "x", "--help"]) == 0
    assert capsys.readouterr().out == help_cache.load("train")["help"]


def test_saved_help_is_not_used_for_other_versions(monkeypatch):
    monkeypatch.setattr(help_cache, "versions", lambda: {"python": "3.11", "hf_custom_lm": "0", "transformers": "0"})
    assert help_cache.load("train") is None
    assert help_cache.answer("train", ["--help"]) is None  # the live parser answers


def test_a_package_pip_never_installed_gets_the_live_parser(monkeypatch):
    def not_installed(name):
        raise help_cache.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(help_cache.metadata, "version", not_installed)
    assert help_cache.load("train") is None


def test_flags_the_parser_accepts_are_left_to_it():
    flags = help_cache.load("train")["flags"]
    # argparse accepts an unambiguous prefix; values and everything after `--` are not flags
    for argv in (["--max_train_t", "10m"], ["--max_steps=5"], ["--output_dir", "x"], ["--", "--anything"]):
        assert help_cache.unknown_flags(argv, flags) == [], argv
    assert help_cache.answer("train", ["--max_steps", "5", "--output_dir", "x"]) is None


def test_unknown_flag_gets_the_same_error_from_saved_and_live_flags(capsys):
    argv = ["--max_train_tme", "10m", "--output_dir", "x"]
    assert help_cache.answer("train", argv) == 2
    saved_error = capsys.readouterr().err
    with pytest.raises(ValueError) as live_error:
        parse_with_config(argv, ARGUMENT_TYPES, prog="hf-custom-lm train")
    assert saved_error == f"hf-custom-lm train: error: {live_error.value}\n"
    assert "--max_train_tme (did you mean --max_train_time" in saved_error
    assert "--max-train-time" not in saved_error  # argparse's dashed alias is not offered as a second spelling


def test_a_finetuning_subcommand_names_an_unknown_flag_from_the_live_parser(capsys):
    from hf_custom_lm.cli import finetune_classifier

    assert finetune_classifier.main(["--model_name_or_path", "m", "--train_file", "t.csv", "--lerning_rate", "1e-4"]) == 2
    assert "unknown flag --lerning_rate (did you mean --learning_rate" in capsys.readouterr().err


def test_a_stray_value_is_not_called_a_flag():
    with pytest.raises(ValueError, match=r"unexpected arguments \['stray'\]: every value follows its flag"):
        parse_with_config(["stray", "--output_dir", "x"], ARGUMENT_TYPES, prog="hf-custom-lm train")
