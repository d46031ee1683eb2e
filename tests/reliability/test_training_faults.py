"""Training under faults.

- A run of `scripts/train.py` killed with SIGKILL (between saves, while writing a checkpoint's weights,
  after its optimizer state but before its trainer state, during the very first save) continues with
  `--resume` from the newest *complete* checkpoint and ends with the weights of an uninterrupted run.
- A checkpoint whose weights are truncated, or whose optimizer or scheduler state is missing, is skipped.
- Early stopping's patience counter and the best metric survive a resume.
- A non-finite loss or gradient stops the run with a clear error; no checkpoint of the diverged weights
  is written and the best checkpoint is never touched again.
- In a 2-process DDP run, SIGKILL of one rank ends the other in bounded time, leaving only complete
  checkpoints behind.
- An output_dir that cannot be created is refused before any data is read; a full disk while saving
  leaves an incomplete checkpoint that `--resume` skips.

Faults are injected at exact points: run as `python -m tests.reliability.test_training_faults ARGS`, this
module runs `scripts/train.py ARGS` after installing a hook (`FAULT_ENV` = "<point>:<step>[:<rank>]") that
writes the process id to `MARKER_ENV`'s file and waits there; the test then sends SIGKILL. The kill comes
from outside, as in real life, but always lands at the same place.
"""

import errno
import hashlib
import json
import logging
import os
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from hf_custom_lm.training.callbacks import NonFiniteLossError
from hf_custom_lm.cli import main as cli
from hf_custom_lm.training import is_complete_checkpoint, last_complete_checkpoint, train_language_model

from ..test_ddp import process_group
from ..test_training import (  # noqa: F401  (tokenizer_dir is a fixture)
    PerturbAfterFirstSave,
    data_arguments,
    model_arguments,
    tokenizer_dir,
    training_arguments,
    write_corpus,
)
from ..test_training_resume import StopAt

ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
FAULT_ENV = "HF_CUSTOM_LM_TEST_FAULT"
MARKER_ENV = "HF_CUSTOM_LM_TEST_FAULT_MARKER"
PAUSE_S = 300  # a paused run exits by itself after this, should its test have died without killing it
START_TIMEOUT_S = 120  # from launch to the pause point: imports, tokenisation, a few steps (loaded CI machine)
MAX_STEPS = 12
# Resumed and uninterrupted runs execute the same float32 operations in the same order on one thread: same
# data order (the sampler skips the consumed batches), the RNG, optimizer and scheduler states restored
# from the checkpoint. They agree bit for bit here (max |diff| 0.0); 1e-6 absolute leaves room for a
# last-bit difference between kernels elsewhere, and is four orders of magnitude below what resuming with
# a fresh AdamW state does to these weights (max |diff| 1.2e-2; README.md has the command).
TOLERANCE = 1e-6


# ---------------------------------------------------------------------------------------------------------------
# Fault injection (runs inside the child process)
# ---------------------------------------------------------------------------------------------------------------


def install_fault(spec: str, marker: Path) -> None:
    """Pause the run at `point` of optimizer step `step` (on `rank` only, when given)."""
    from transformers import Trainer, modeling_utils

    from hf_custom_lm.training import trainer as training  # where `build_trainer` looks up `build_callbacks`

    point, step, *rank = spec.split(":")
    step = int(step)
    if rank and os.environ.get("RANK", "0") != rank[0]:
        return

    def pause():
        marker.write_text(str(os.getpid()))
        time.sleep(PAUSE_S)
        os._exit(3)

    if point == "step_end":  # the optimizer step is taken, its checkpoint (if any) not yet begun

        class PauseAtStep(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == step:
                    pause()

        build_callbacks = training.build_callbacks
        training.build_callbacks = lambda *args, **kwargs: build_callbacks(*args, **kwargs) + [PauseAtStep()]
    elif point == "weights":  # model.safetensors of checkpoint-<step> half written
        save_file = modeling_utils.safe_save_file

        def save_half(tensors, filename, metadata=None):
            save_file(tensors, filename, metadata=metadata)
            if Path(filename).parent.name == f"checkpoint-{step}":
                os.truncate(filename, os.path.getsize(filename) // 2)
                pause()

        modeling_utils.safe_save_file = save_half
    elif point == "trainer_state":  # weights, optimizer, scheduler and RNG written; trainer_state.json not
        save_rng_state = Trainer._save_rng_state

        def save_rng_state_then_pause(self, output_dir):
            save_rng_state(self, output_dir)
            if self.state.global_step == step:
                pause()

        Trainer._save_rng_state = save_rng_state_then_pause
    else:
        raise ValueError(f"Unknown fault point {point!r}.")


if __name__ == "__main__":
    install_fault(os.environ[FAULT_ENV], Path(os.environ[MARKER_ENV]))
    sys.argv = [str(TRAIN_SCRIPT), *sys.argv[1:]]
    runpy.run_path(str(TRAIN_SCRIPT), run_name="__main__")


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


def fault_env(spec: str, marker: Path) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), FAULT_ENV: spec, MARKER_ENV: str(marker)}


def wait_for(marker: Path, process: subprocess.Popen, log: Path, timeout: float = START_TIMEOUT_S) -> int:
    """The pid written to `marker` by the paused process."""
    deadline = time.monotonic() + timeout
    while not (marker.is_file() and marker.read_text()):
        if process.poll() is not None:
            pytest.fail(f"the run ended (code {process.returncode}) before its fault point:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"the run did not reach its fault point in time:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return int(marker.read_text())


def kill_at(spec: str, argv: list[str], workdir: Path) -> None:
    """Run `scripts/train.py argv` until the fault point `spec`, then SIGKILL it."""
    marker, log = workdir / f"paused-{spec.replace(':', '-')}", workdir / f"log-{spec.replace(':', '-')}.txt"
    command = [sys.executable, "-m", "tests.reliability.test_training_faults", *argv]
    with open(log, "w") as stderr, process_group(
        command, cwd=ROOT, env=fault_env(spec, marker), stdout=subprocess.DEVNULL, stderr=stderr
    ) as process:
        wait_for(marker, process, log)
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL


def train_argv(data: dict, output_dir: Path, max_steps: int = MAX_STEPS) -> list[str]:
    """A tiny run saving (and evaluating) every 2 steps, keeping every checkpoint."""
    return [
        "--tokenizer_name", data["tokenizer"], "--train_file", data["train"], "--validation_file", data["validation"],
        "--block_size", "32", "--cache_dir", data["cache"], "--output_dir", str(output_dir),
        "--max_steps", str(max_steps), "--save_steps", "2", "--eval_steps", "2", "--max_eval_samples", "4",
        "--logging_steps", "1", "--per_device_train_batch_size", "4", "--learning_rate", "3e-3",
        "--warmup_steps", "0", "--seed", "0", "--save_total_limit", "100", "--report_to", "none",
        "--disable_tqdm", "true", "--early_stopping_patience", "0", "--bf16", "false",
    ]


@pytest.fixture
def one_thread():
    """The test process computes like the `OMP_NUM_THREADS=1` children, so the arithmetic matches theirs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tokenizer_dir):
    """An uninterrupted 12-step run through the command line, and the data it used."""
    workdir = tmp_path_factory.mktemp("faults")
    train, validation = write_corpus(workdir)
    data = {"tokenizer": tokenizer_dir, "train": train, "validation": validation, "cache": str(workdir / "cache")}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli(["train", *train_argv(data, workdir / "reference")]) == 0
    finally:
        torch.set_num_threads(threads)
    return data, workdir / "reference"


def resume(data: dict, run: Path, caplog) -> Path:
    """`hf-custom-lm train ... --resume` in this process; returns the checkpoint it resumed from."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hf_custom_lm"):
        assert cli(["train", *train_argv(data, run), "--resume"]) == 0
    resumed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Resuming from ")]
    assert len(resumed) == 1, [r.getMessage() for r in caplog.records]
    return Path(resumed[0].removeprefix("Resuming from "))


def assert_same_weights(run: Path, reference_run: Path, tolerance: float = TOLERANCE) -> None:
    for name in (f"checkpoint-{MAX_STEPS}/model.safetensors", "model.safetensors"):  # last step, best model
        expected, actual = load_file(reference_run / name), load_file(run / name)
        assert actual.keys() == expected.keys()
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=tolerance, msg=f"{name}: {key}")


def copy_run_until(reference_run: Path, run: Path, step: int) -> None:
    """The checkpoints up to `step` of the reference run, as a run that crashed after that save would hold."""
    for checkpoint in reference_run.glob("checkpoint-*"):
        if int(checkpoint.name.split("-")[1]) <= step:
            shutil.copytree(checkpoint, run / checkpoint.name)
            state = run / checkpoint.name / "trainer_state.json"  # best_model_checkpoint names the folder
            state.write_text(state.read_text().replace(str(reference_run), str(run)))


# ---------------------------------------------------------------------------------------------------------------
# SIGKILL, then --resume
# ---------------------------------------------------------------------------------------------------------------

KILL_POINTS = [
    # (fault point, step, the checkpoint --resume must pick)
    pytest.param("step_end:5", 4, id="between-saves"),
    pytest.param("weights:8", 6, id="while-writing-weights"),
    pytest.param("trainer_state:8", 6, id="before-trainer-state"),
]


@pytest.mark.slow
@pytest.mark.parametrize("spec, resumes_from", KILL_POINTS)
def test_sigkill_then_resume_matches_an_uninterrupted_run(reference, tmp_path, one_thread, caplog, spec, resumes_from):
    data, reference_run = reference
    run = tmp_path / "run"
    kill_at(spec, train_argv(data, run), tmp_path)

    step = int(spec.split(":")[1])
    if step % 2 == 0:  # killed inside the save of checkpoint-<step>: the folder is there, incomplete
        assert (run / f"checkpoint-{step}").is_dir() and not is_complete_checkpoint(run / f"checkpoint-{step}")
    assert last_complete_checkpoint(run) == run / f"checkpoint-{resumes_from}"

    assert resume(data, run, caplog) == run / f"checkpoint-{resumes_from}"
    assert json.loads((run / "trainer_state.json").read_text())["global_step"] == MAX_STEPS
    assert_same_weights(run, reference_run)


@pytest.mark.slow
def test_sigkill_during_the_first_save_leaves_nothing_to_resume_and_says_how_to_start_over(
    reference, tmp_path, capsys
):
    data, _ = reference
    run = tmp_path / "run"
    kill_at("weights:2", train_argv(data, run), tmp_path)
    assert last_complete_checkpoint(run) is None

    capsys.readouterr()
    assert cli(["train", *train_argv(data, run), "--resume"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("hf-custom-lm train: error: ") and "Traceback" not in error
    assert "no complete checkpoint" in error and "checkpoint-2" in error and "delete" in error


DAMAGES = {
    "model.safetensors truncated": lambda c: os.truncate(c / "model.safetensors", 1000),
    "optimizer.pt missing": lambda c: (c / "optimizer.pt").unlink(),
    "optimizer.pt truncated": lambda c: os.truncate(c / "optimizer.pt", 100),
    "scheduler.pt missing": lambda c: (c / "scheduler.pt").unlink(),
    "trainer_state.json truncated": lambda c: os.truncate(c / "trainer_state.json", 20),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_checkpoint_is_not_complete(reference, tmp_path, damage):
    """What a power cut can leave (files written out of order, never synced); a SIGKILL cannot."""
    _, reference_run = reference
    run = tmp_path / "run"
    copy_run_until(reference_run, run, 8)
    assert last_complete_checkpoint(run) == run / "checkpoint-8"
    DAMAGES[damage](run / "checkpoint-8")
    assert not is_complete_checkpoint(run / "checkpoint-8")
    assert last_complete_checkpoint(run) == run / "checkpoint-6"


@pytest.mark.parametrize("damage", ["model.safetensors truncated", "optimizer.pt missing"])
def test_resume_skips_a_damaged_checkpoint_and_matches_an_uninterrupted_run(
    reference, tmp_path, one_thread, caplog, damage
):
    # Without the optimizer state the Trainer would resume silently with a fresh AdamW: other weights.
    data, reference_run = reference
    run = tmp_path / "run"
    copy_run_until(reference_run, run, 8)
    DAMAGES[damage](run / "checkpoint-8")
    assert resume(data, run, caplog) == run / "checkpoint-6"
    assert_same_weights(run, reference_run)


# ---------------------------------------------------------------------------------------------------------------
# Early stopping across a resume
# ---------------------------------------------------------------------------------------------------------------


def test_early_stopping_patience_and_best_metric_survive_a_resume(tmp_path, tokenizer_dir):
    # Learning rate 0 and noise added after the first save: evaluation 2 is the best, 4, 6, ... are worse.
    # With patience 2, an uninterrupted run stops at step 6 (see test_training).
    def args(**overrides):
        return training_arguments(tmp_path, learning_rate=0.0, max_steps=40, eval_steps=2, save_steps=2,
                                  early_stopping_patience=2, **overrides)

    data_args = data_arguments(tmp_path)
    train_language_model(model_arguments(tokenizer_dir), data_args, args(), [PerturbAfterFirstSave(), StopAt(4)])
    run = tmp_path / "run"
    saved = json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())
    assert saved["stateful_callbacks"]["EarlyStoppingCallback"]["attributes"] == {"early_stopping_patience_counter": 1}
    assert saved["best_model_checkpoint"].endswith("checkpoint-2")

    train_language_model(model_arguments(tokenizer_dir), data_args, args(resume=True))
    state = json.loads((run / "trainer_state.json").read_text())
    # One more evaluation without improvement exhausts the patience: the counter was 1, not 0, at step 4.
    assert state["global_step"] == 6
    assert state["best_model_checkpoint"].endswith("checkpoint-2") and state["best_metric"] == saved["best_metric"]
    final, best = load_file(run / "model.safetensors"), load_file(run / "checkpoint-2" / "model.safetensors")
    for name in best:
        torch.testing.assert_close(final[name], best[name], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# Non-finite loss or gradient
# ---------------------------------------------------------------------------------------------------------------


class InjectNonFinite(TrainerCallback):
    """From optimizer step `step` on, a NaN in the forward pass (-> loss) or an inf in one gradient."""

    def __init__(self, kind: str, step: int):
        self.kind, self.step = kind, step

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 != self.step:
            return
        if self.kind == "loss":
            model.model.norm.register_forward_hook(lambda module, inputs, output: output * float("nan"))
        else:
            model.model.layers[0].mlp.down_proj.weight.register_hook(lambda grad: grad * float("inf"))


class RecordSavedFiles(TrainerCallback):
    """The sha256 of every checkpoint file right after its save."""

    def __init__(self):
        self.digests = {}

    def on_save(self, args, state, control, **kwargs):
        for path in Path(args.output_dir).glob("checkpoint-*/*"):
            self.digests.setdefault(path, hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.mark.parametrize(
    "kind, step, logging_steps, message",
    [
        pytest.param("loss", 6, 1, "Training loss is nan at step 6", id="nan-loss-at-a-save-step"),
        pytest.param("grad", 6, 1, "Training grad_norm is inf at step 6", id="inf-gradient-at-a-save-step"),
        # Logged only at step 8: the evaluation before the save of step 6 is what catches it.
        pytest.param("loss", 5, 4, "Evaluation eval_loss is nan at step 6", id="nan-loss-between-logs"),
    ],
)
def test_non_finite_values_stop_training_and_leave_the_best_checkpoint_untouched(
    tmp_path, tokenizer_dir, kind, step, logging_steps, message
):
    record = RecordSavedFiles()
    args = training_arguments(tmp_path, max_steps=12, eval_steps=2, save_steps=2, logging_steps=logging_steps)
    with pytest.raises(NonFiniteLossError, match=message):
        train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args,
                             [InjectNonFinite(kind, step), record])
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert not (run / "model.safetensors").exists(), "a final model was saved from diverged weights"
    for checkpoint in run.glob("checkpoint-*"):
        assert all(torch.isfinite(t).all() for t in load_file(checkpoint / "model.safetensors").values())
    best = Path(json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())["best_model_checkpoint"])
    assert best.parent == run
    # Every file of every checkpoint is byte for byte what was written at its save.
    assert record.digests and all(hashlib.sha256(p.read_bytes()).hexdigest() == d for p, d in record.digests.items())


# ---------------------------------------------------------------------------------------------------------------
# DDP: one rank killed
# ---------------------------------------------------------------------------------------------------------------

DDP_TEARDOWN_BOUND_S = 60


def group_is_empty(pgid: int, wait_s: float = 5.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_killing_one_ddp_rank_ends_the_other_in_bounded_time(reference, tmp_path):
    data, _ = reference
    run, marker, log = tmp_path / "ddp", tmp_path / "rank1-paused", tmp_path / "torchrun.txt"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "tests.reliability.test_training_faults", *train_argv(data, run),
    ]
    with open(log, "w") as output, process_group(
        command, cwd=ROOT, env=fault_env("step_end:5:1", marker), stdout=output, stderr=subprocess.STDOUT
    ) as agent:
        rank1 = wait_for(marker, agent, log)
        os.kill(rank1, signal.SIGKILL)
        killed = time.monotonic()
        code = agent.wait(timeout=DDP_TEARDOWN_BOUND_S)  # TimeoutExpired: the survivor hangs
        teardown_s = time.monotonic() - killed
        # torchrun ended its other worker before exiting: nothing of the group is left (as its parent, the agent
        # reaped it; `process_group` would otherwise SIGKILL it on leaving, and hide the leak).
        assert group_is_empty(agent.pid), "a worker outlived torchrun"
    text = log.read_text()
    assert code != 0, text[-3000:]
    # torchrun's failure report: rank 1 killed (the root cause); rank 0 failed too, ended by the agent's
    # SIGTERM (-15, what this machine shows) or by its own error should gloo notice the lost peer first.
    assert re.search(r"rank\s*: 1 \(local_rank: 1\)\s*exitcode\s*: -9\b", text), text[-3000:]
    assert re.search(r"rank\s*: 0 \(local_rank: 0\)\s*exitcode\s*: -?[1-9]", text), text[-3000:]
    print(f"torchrun exited {teardown_s:.1f} s after SIGKILL of rank 1")
    # Rank 1 paused after step 5; rank 0 was blocked in step 6's gradient all-reduce: the newest checkpoint
    # is 4, complete, and nothing of checkpoint-6 was begun.
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert all(is_complete_checkpoint(p) for p in run.glob("checkpoint-*"))


# ---------------------------------------------------------------------------------------------------------------
# Unusable output_dir, full disk
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_output_dir",
    [
        pytest.param(lambda tmp: tmp / "a_file" / "run", id="parent-is-a-file"),  # root ignores chmod, not this
        pytest.param(lambda tmp: Path("/proc/hf_custom_lm_test/run"), id="under-proc"),
    ],
)
def test_an_output_dir_that_cannot_be_created_is_refused_before_reading_data(
    tmp_path, tokenizer_dir, capsys, make_output_dir
):
    (tmp_path / "a_file").write_text("not a folder")
    output_dir = make_output_dir(tmp_path)
    data_args = data_arguments(tmp_path)
    with pytest.raises(ValueError, match=rf"`output_dir` '{output_dir}' .*--output_dir"):
        train_language_model(model_arguments(tokenizer_dir), data_args,
                             training_arguments(tmp_path, output_dir=str(output_dir)))
    assert not (tmp_path / "cache").exists(), "data was read before the output_dir check"

    assert cli(["train", "--output_dir", str(output_dir), "--train_file", data_args.train_file,
                "--tokenizer_name", tokenizer_dir, "--report_to", "none"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("hf-custom-lm train: error: `output_dir`"), error


def test_a_full_disk_while_saving_is_one_line_and_resume_skips_the_partial_checkpoint(
    tmp_path, tokenizer_dir, capsys, monkeypatch, caplog
):
    from transformers import modeling_utils

    save_file = modeling_utils.safe_save_file

    def disk_fills_at_checkpoint_4(tensors, filename, metadata=None):
        if Path(filename).parent.name == "checkpoint-4":
            Path(filename).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        save_file(tensors, filename, metadata=metadata)

    train, validation = write_corpus(tmp_path)
    data = {"tokenizer": tokenizer_dir, "train": train, "validation": validation, "cache": str(tmp_path / "cache")}
    run = tmp_path / "run"
    monkeypatch.setattr(modeling_utils, "safe_save_file", disk_fills_at_checkpoint_4)
    assert cli(["train", *train_argv(data, run, max_steps=6)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("hf-custom-lm train: error: ") and "No space left on device" in error[-1]
    assert "Traceback" not in "\n".join(error)
    assert last_complete_checkpoint(run) == run / "checkpoint-2"

    monkeypatch.setattr(modeling_utils, "safe_save_file", save_file)
    with caplog.at_level(logging.INFO, logger="hf_custom_lm"):
        assert cli(["train", *train_argv(data, run, max_steps=6), "--resume"]) == 0
    assert f"Resuming from {run / 'checkpoint-2'}" in caplog.messages
    assert is_complete_checkpoint(run / "checkpoint-4") and is_complete_checkpoint(run / "checkpoint-6")
