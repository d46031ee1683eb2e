"""run_clm flags users bring: `--max_train_samples`, `--max_eval_samples` and `--overwrite_output_dir`; a new
run refuses a folder of files no run wrote, or an earlier run's checkpoints, unless told to overwrite."""

import pytest

from hf_custom_lm.cli import main as cli
from hf_custom_lm.cli.train import parse_train_args
from hf_custom_lm.training.arguments import LMTrainingArguments
from hf_custom_lm.training.checkpoints import resolve_resume_checkpoint
from hf_custom_lm.training.language_model import evaluation_sample, prepare_lm_datasets

from .test_training import data_arguments


def fresh_run(output_dir, **overrides):
    return LMTrainingArguments(output_dir=str(output_dir), report_to=[], **overrides)


def test_max_train_samples_keeps_the_first_blocks(tmp_path, tokenizer):
    _, data_args, _ = parse_train_args(["--max_train_samples", "5", "--output_dir", str(tmp_path / "run")])
    assert data_args.max_train_samples == 5
    full = prepare_lm_datasets(data_arguments(tmp_path, block_size=16), tokenizer, 128)[0]
    few = prepare_lm_datasets(data_arguments(tmp_path, block_size=16, max_train_samples=5), tokenizer, 128)[0]
    assert len(full) > 5 and len(few) == 5 and few[:]["input_ids"] == full.select(range(5))[:]["input_ids"]


def test_max_eval_samples_spreads_the_periodic_sample_over_the_validation_text(tmp_path, tokenizer):
    """The first blocks are the first document: a text whose first part is easy would score the run on it alone."""
    validation = prepare_lm_datasets(data_arguments(tmp_path, block_size=16), tokenizer, 128)[1]
    sample = evaluation_sample(validation, 4, spread=True)
    quarters = [part * len(validation) // 4 for part in range(4)]  # one block from each quarter of the text
    assert len(validation) >= 8 and len(sample) == 4
    assert sample[:]["input_ids"] == validation.select(quarters)[:]["input_ids"]
    assert evaluation_sample(validation, 10**6, spread=True)[:]["input_ids"] == validation[:]["input_ids"]


def test_a_folder_of_other_files_is_refused_unless_overwriting(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"notes\.txt.*--overwrite_output_dir"):
        resolve_resume_checkpoint(fresh_run(tmp_path))
    assert resolve_resume_checkpoint(fresh_run(tmp_path, overwrite_output_dir=True)) is None
    assert (tmp_path / "notes.txt").read_text() == "mine"  # written beside, never deleted


def test_empty_missing_and_run_folders_are_accepted(tmp_path):
    assert resolve_resume_checkpoint(fresh_run(tmp_path / "new")) is None
    (tmp_path / "empty").mkdir()
    assert resolve_resume_checkpoint(fresh_run(tmp_path / "empty")) is None
    (tmp_path / "finished").mkdir()
    (tmp_path / "finished" / "trainer_state.json").write_text("{}")
    (tmp_path / "finished" / "model.safetensors").write_text("")
    assert resolve_resume_checkpoint(fresh_run(tmp_path / "finished")) is None
    (tmp_path / "stopped" / "tokenizer").mkdir(parents=True)  # a run stopped before its first save
    (tmp_path / "stopped" / "sizing.json").write_text("{}")
    assert resolve_resume_checkpoint(fresh_run(tmp_path / "stopped")) is None


def test_overwriting_a_run_deletes_its_old_checkpoints(tmp_path):
    (tmp_path / "checkpoint-500").mkdir()
    (tmp_path / "trainer_state.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds checkpoints.*--overwrite_output_dir"):
        resolve_resume_checkpoint(fresh_run(tmp_path))
    assert resolve_resume_checkpoint(fresh_run(tmp_path, overwrite_output_dir=True)) is None
    assert not (tmp_path / "checkpoint-500").exists() and (tmp_path / "trainer_state.json").exists()


def test_train_command_refuses_a_folder_of_other_files_before_reading_data(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("")
    status = cli(["train", "--output_dir", str(tmp_path), "--train_file", str(tmp_path / "missing.txt"),
                  "--report_to", "none"])
    error = capsys.readouterr().err
    assert status == 2 and "thesis.tex" in error and "--overwrite_output_dir" in error
