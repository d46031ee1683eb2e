"""Resume: an interrupted run continued with `--resume` ends with the same weights and step count as an
uninterrupted one; half-written checkpoints are skipped; a killed run leaves a usable checkpoint."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save
from transformers import TrainerCallback

from hf_custom_lm.training import train_language_model
from hf_custom_lm.training.checkpoints import (
    INCOMPLETE_SENTINEL,
    is_complete_checkpoint,
    last_complete_checkpoint,
    resolve_resume_checkpoint,
)

from .test_training import (  # noqa: F401  (tokenizer_dir is a fixture)
    data_arguments,
    model_arguments,
    tokenizer_dir,
    training_arguments,
    write_corpus,
)

ROOT = Path(__file__).resolve().parents[1]


class StopAt(TrainerCallback):
    """Ends training after `step`, as an interruption would (its checkpoint has been written)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def fake_checkpoint(run, step, files):
    path = run / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name, content in files.items():
        if isinstance(content, bytes):
            (path / name).write_bytes(content)
        else:
            (path / name).write_text(content)
    return path


def complete_files() -> dict:
    """A finished save in miniature: readable weights, config, optimizer and scheduler state, trainer state."""
    optimizer = io.BytesIO()
    torch.save({}, optimizer)
    return {"config.json": "{}", "model.safetensors": save({"w": torch.zeros(1)}), "optimizer.pt": optimizer.getvalue(),
            "scheduler.pt": "", "trainer_state.json": "{}"}


def test_interrupted_then_resumed_run_matches_an_uninterrupted_one(tmp_path, tokenizer_dir):
    data_args = data_arguments(tmp_path)
    straight = training_arguments(tmp_path, output_dir=str(tmp_path / "straight"), max_steps=8)
    train_language_model(model_arguments(tokenizer_dir), data_args, straight)

    resumed = training_arguments(tmp_path, output_dir=str(tmp_path / "resumed"), max_steps=8)
    train_language_model(model_arguments(tokenizer_dir), data_args, resumed, [StopAt(4)])
    run = tmp_path / "resumed"
    assert json.loads((run / "trainer_state.json").read_text())["global_step"] == 4
    # A save interrupted after the weights: newer than checkpoint-4 but without its trainer state.
    fake_checkpoint(run, 6, {"model.safetensors": "partial"})
    assert last_complete_checkpoint(run) == run / "checkpoint-4"

    resumed.resume = True
    train_language_model(model_arguments(tokenizer_dir), data_args, resumed)
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    # Same data order (the sampler skips the consumed batches), same RNG and optimizer state: on one CPU
    # process the arithmetic is identical, so the tolerance is float32 round-off only.
    expected = load_file(tmp_path / "straight" / "checkpoint-8" / "model.safetensors")
    actual = load_file(run / "checkpoint-8" / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6)
    straight_losses = [e["loss"] for e in json.loads((tmp_path / "straight" / "trainer_state.json").read_text())[
        "log_history"] if "loss" in e]
    resumed_losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert resumed_losses == pytest.approx(straight_losses, abs=1e-6)


def test_complete_checkpoint_needs_weights_and_a_readable_trainer_state(tmp_path):
    run = tmp_path / "run"
    complete = fake_checkpoint(run, 2, complete_files())
    fake_checkpoint(run, 4, {"model.safetensors": "w"})  # killed before the trainer state
    fake_checkpoint(run, 6, {"model.safetensors": "w", "trainer_state.json": '{"global_st'})  # truncated
    fake_checkpoint(run, 8, {"model.safetensors": "w", "trainer_state.json": "{}", INCOMPLETE_SENTINEL: ""})
    fake_checkpoint(run, 10, {"trainer_state.json": "{}"})  # no weights
    assert [is_complete_checkpoint(run / f"checkpoint-{s}") for s in (2, 4, 6, 8, 10)] == [True] + [False] * 4
    assert last_complete_checkpoint(run) == complete
    assert last_complete_checkpoint(tmp_path / "nowhere") is None


def test_resume_choices_refuse_ambiguous_output_dirs(tmp_path):
    args = training_arguments(tmp_path)
    assert resolve_resume_checkpoint(args) is None  # fresh run, empty output_dir
    args.resume = True
    with pytest.raises(FileNotFoundError, match="found no complete checkpoint.*drop `--resume`"):
        resolve_resume_checkpoint(args)
    fake_checkpoint(tmp_path / "run", 3, complete_files())
    assert resolve_resume_checkpoint(args).endswith("checkpoint-3")
    args.resume = False
    with pytest.raises(ValueError, match="already holds checkpoints.*--resume"):
        resolve_resume_checkpoint(args)
    args.resume_from_checkpoint = str(tmp_path / "run" / "checkpoint-9")
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        resolve_resume_checkpoint(args)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_run_leaves_a_checkpoint_that_resumes(tmp_path, tokenizer_dir, signum):
    """Kill a CLI run between saves; `--resume` continues from the newest complete checkpoint."""
    train, validation = write_corpus(tmp_path)
    run = tmp_path / "run"
    argv = [
        sys.executable, str(ROOT / "scripts" / "train.py"), "--tokenizer_name", tokenizer_dir,
        "--train_file", train, "--validation_file", validation, "--block_size", "32",
        "--output_dir", str(run), "--max_steps", "2000", "--save_steps", "2", "--eval_steps", "2",
        "--max_eval_samples", "4", "--logging_steps", "1", "--per_device_train_batch_size", "4",
        "--report_to", "none", "--disable_tqdm", "true", "--early_stopping_patience", "0", "--bf16", "false",
        "--cache_dir", str(tmp_path / "cache"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # stderr to a file, not a pipe: an unread pipe fills up with the run's logs and blocks the child.
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        # A shell that starts this suite in the background (`make test &`) ignores SIGINT, and children inherit
        # that; restore the default so the child's Python turns SIGINT into KeyboardInterrupt as in a terminal.
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while time.time() < deadline and last_complete_checkpoint(run) is None:
            assert process.poll() is None, log.read_text()[-4000:]
            time.sleep(0.2)
        time.sleep(0.5)  # land somewhere between saves, possibly inside one
        process.send_signal(signum)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    checkpoint = last_complete_checkpoint(run)
    assert checkpoint is not None
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]

    args = training_arguments(
        tmp_path, max_steps=step + 2, save_steps=2, eval_steps=2, per_device_train_batch_size=4, resume=True
    )
    data_args = data_arguments(tmp_path, train_file=train, validation_file=validation, max_eval_samples=4)
    metrics = train_language_model(model_arguments(tokenizer_dir), data_args, args)
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["global_step"] == step + 2 and torch.isfinite(torch.tensor(metrics["eval_loss"]))
