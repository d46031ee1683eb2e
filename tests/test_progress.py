"""Training progress when stderr is not a terminal: plain lines at the logging interval, no tqdm bars."""

import io
import sys

import pytest
from transformers import ProgressCallback, Trainer, TrainingArguments

from hf_custom_lm.cli.common import no_progress_bars_in_logs
from hf_custom_lm.training.progress import PlainProgressCallback, use_plain_progress
from hf_custom_lm.training.trainer import CustomLMTrainer

from .builders import _blocks, tiny_model
from .conftest import SAMPLE_TEXT


class Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def tiny_trainer(tmp_path, tokenizer, trainer_class=Trainer):
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, logging_steps=2, per_device_train_batch_size=4, report_to=[],
        save_strategy="no", use_cpu=True,
    )
    return trainer_class(model=tiny_model(tokenizer).train(), args=args, train_dataset=_blocks(tokenizer, SAMPLE_TEXT))


def test_a_log_file_gets_one_plain_line_per_logging_step(tmp_path, tokenizer):
    trainer, stream = tiny_trainer(tmp_path, tokenizer), Stream(tty=False)
    assert use_plain_progress(trainer, stream)
    callbacks = trainer.callback_handler.callbacks
    assert not any(isinstance(c, ProgressCallback) for c in callbacks)
    trainer.train()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()
    assert lines[0].startswith("step 2/4 (50%): loss ") and "left" in lines[0]
    assert lines[1].startswith("step 4/4 (100%): loss ")
    assert any("train_runtime" in line for line in lines[2:])  # the end-of-training summary, as a line too


def test_a_terminal_keeps_the_progress_bars(tmp_path, tokenizer):
    trainer = tiny_trainer(tmp_path, tokenizer)
    assert not use_plain_progress(trainer, Stream(tty=True))
    assert any(isinstance(c, ProgressCallback) for c in trainer.callback_handler.callbacks)


@pytest.mark.parametrize("tty", [False, True])
def test_our_trainer_switches_by_what_stderr_is(tmp_path, tokenizer, monkeypatch, tty):
    monkeypatch.setattr("sys.stderr", Stream(tty=tty))
    callbacks = tiny_trainer(tmp_path, tokenizer, CustomLMTrainer).callback_handler.callbacks
    assert any(isinstance(c, PlainProgressCallback) for c in callbacks) is not tty
    assert any(isinstance(c, ProgressCallback) for c in callbacks) is tty


def test_commands_turn_library_bars_off_in_logs_and_keep_a_users_setting():
    environ = {"HF_DATASETS_DISABLE_PROGRESS_BARS": "0"}
    assert no_progress_bars_in_logs(Stream(tty=False), environ)
    assert environ == {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "0"}
    environ = {}
    assert not no_progress_bars_in_logs(Stream(tty=True), environ) and environ == {}


def test_a_budgeted_run_logs_time_left_in_the_budget_even_on_a_terminal(tmp_path, tokenizer, monkeypatch):
    from hf_custom_lm.training import LMTrainingArguments
    from hf_custom_lm.training.budget import TimeBudgetCallback, TrainingClock

    monkeypatch.setattr("sys.stderr", Stream(tty=True))
    args = LMTrainingArguments(output_dir=str(tmp_path), max_steps=4, logging_steps=2, per_device_train_batch_size=4,
                               report_to=[], eval_strategy="no", early_stopping_patience=0,
                               load_best_model_at_end=False, max_train_time="10m")
    trainer = CustomLMTrainer(model=tiny_model(tokenizer).train(), args=args,
                              train_dataset=_blocks(tokenizer, SAMPLE_TEXT),
                              callbacks=[TimeBudgetCallback(TrainingClock(600))])
    trainer.train()
    lines = [line for line in sys.stderr.getvalue().splitlines() if line.startswith("step ")]
    assert lines[0].startswith("step 2: loss ") and "of the budget left (wall clock)" in lines[0]
