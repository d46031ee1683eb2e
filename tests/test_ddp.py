"""Data-parallel training: `torchrun --nproc_per_node 2` (DDP over gloo, 2 CPU processes) trains like one
process with the same global batch (2 x 4 rows against 1 x 8)."""

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_custom_lm.training import train_language_model

from .test_training import (  # noqa: F401  (tokenizer_dir is a fixture)
    data_arguments,
    model_arguments,
    tokenizer_dir,
    training_arguments,
    write_corpus,
)

ROOT = Path(__file__).resolve().parents[1]
# The two runs see the same rows per optimizer step; they differ only in float32 summation order (the
# gradient all-reduce of two half batches against one backward pass over the whole batch, 1 against 2
# threads), which moves losses and weights by ~1e-6 over these steps. 1e-4 leaves room for that, and is
# far below what a wrong data split (each process seeing the same rows) or an unsynchronised update gives.
TOLERANCE = 1e-4


@contextmanager
def process_group(command: list[str], **popen_kwargs):
    """`Popen(command)` as the leader of a new session; on leaving, SIGKILL whatever of its group is alive.

    torchrun's workers are children of its agent, not of the test: killing only the agent on a timeout or a
    failed assertion would leave them training on their own. The whole group goes instead.
    """
    process = subprocess.Popen(command, start_new_session=True, **popen_kwargs)
    try:
        yield process
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:  # every process of the group has exited
            pass
        process.wait()


def logged(run, key):
    history = json.loads((run / "trainer_state.json").read_text())["log_history"]
    return [entry[key] for entry in history if key in entry]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path, tokenizer_dir):
    # 16 evaluation blocks, periodic and final: 2 processes x 8 per batch, so no process pads its last batch with
    # repeats (the Trainer drops repeated rows but not their share of the batch's mean loss). 2000 characters
    # of validation text make 16 blocks of 32 tokens with this tokenizer (checked below).
    (tmp_path / "data").mkdir()
    train, validation = write_corpus(tmp_path / "data", validation_chars=2000)
    data_args = data_arguments(tmp_path, train_file=train, validation_file=validation, max_eval_samples=16)
    # AdamW, float32 throughout: Muon's Newton-Schulz iterations run in bf16 and can round the ~1e-6 summation
    # differences into steps of ~1e-3 in a few weights (the budget run below trains with Muon)
    single = training_arguments(tmp_path, output_dir=str(tmp_path / "single"), max_steps=6, eval_steps=3,
                                save_steps=3, per_device_train_batch_size=8, per_device_eval_batch_size=8,
                                hidden_optimizer="adamw")
    train_language_model(model_arguments(tokenizer_dir), data_args, single)
    from transformers import AutoTokenizer

    from hf_custom_lm.training.data import load_text_dataset
    from hf_custom_lm.training.packing import tokenize_and_pack

    raw = load_text_dataset(train_file=train, validation_file=validation)
    assert len(tokenize_and_pack(raw, AutoTokenizer.from_pretrained(tokenizer_dir), 32)["validation"]) == 16

    ddp_run = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(ROOT / "scripts" / "train.py"),
        "--tokenizer_name", tokenizer_dir, "--config_name", "tiny",
        "--train_file", data_args.train_file, "--validation_file", data_args.validation_file,
        "--block_size", str(data_args.block_size), "--cache_dir", data_args.cache_dir, "--max_eval_samples", "16",
        "--output_dir", str(ddp_run), "--per_device_train_batch_size", "4",
        "--max_steps", "6", "--eval_steps", "3", "--save_steps", "3", "--logging_steps", "1",
        "--learning_rate", str(single.learning_rate), "--warmup_steps", "0", "--seed", str(single.seed),
        "--per_device_eval_batch_size", "8", "--bf16", "false", "--early_stopping_patience", "0",
        "--report_to", "none", "--disable_tqdm", "true", "--hidden_optimizer", "adamw",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with process_group(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-4000:]

    state = json.loads((ddp_run / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert logged(ddp_run, "loss") == pytest.approx(logged(tmp_path / "single", "loss"), abs=TOLERANCE)
    assert logged(ddp_run, "eval_loss") == pytest.approx(logged(tmp_path / "single", "eval_loss"), abs=TOLERANCE)
    ddp_weights = load_file(ddp_run / "model.safetensors")
    single_weights = load_file(tmp_path / "single" / "model.safetensors")
    for name, tensor in single_weights.items():
        torch.testing.assert_close(ddp_weights[name], tensor, rtol=0, atol=TOLERANCE)


@pytest.mark.slow
def test_two_process_budget_run_stops_every_rank_at_the_same_step(tmp_path, tokenizer_dir):
    """Rank 0's clock is broadcast at every step: the ranks stop together (a rank left behind would hang in its
    next all-reduce until the timeout) and end with the full evaluation. With the bundled 8192-token tokenizer
    and a budget, the head trains on a sampled softmax (each rank draws its own candidates) until the decay."""
    data_args = data_arguments(tmp_path, max_eval_samples=16)
    run = tmp_path / "ddp-budget"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(ROOT / "scripts" / "train.py"),
        "--tokenizer_name", tokenizer_dir, "--config_name", "tiny", "--max_train_time", "6s",
        "--train_file", data_args.train_file, "--validation_file", data_args.validation_file,
        "--block_size", str(data_args.block_size), "--cache_dir", data_args.cache_dir, "--max_eval_samples", "16",
        "--output_dir", str(run), "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
        "--logging_steps", "1", "--bf16", "false", "--report_to", "none", "--disable_tqdm", "true",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with process_group(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-4000:]
    results = json.loads((run / "train_results.json").read_text())
    assert results["train_stop_reason"] == "time budget" and results["train_steps"] > 0
    assert 6 <= results["train_clock_seconds"] < 12
    assert "eval_bits_per_byte" in json.loads((run / "eval_results.json").read_text())
    assert "a sampled softmax of 1024 draws" in stderr and "Full softmax from step" in stderr
    assert "`--hidden_optimizer muon` (the default for a model trained from scratch)" in stderr
