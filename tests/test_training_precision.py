"""bf16 autocast where it is faster: the sizing's probe times the run's precision, and with `--bf16` unset on a
CPU with native bf16 the run takes the precision whose step was timed faster (`training/precision.py`)."""

import functools
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from hf_custom_lm.model import CustomLMForCausalLM
from hf_custom_lm.training import LMTrainingArguments, arguments, precision, sizing, train_language_model
from hf_custom_lm.training.sizing import SIZING_FILE, size_model

from .test_training import (  # noqa: F401  (tokenizer_dir is a fixture)
    data_arguments,
    model_arguments,
    tokenizer_dir,
    training_arguments,
)


@pytest.fixture
def autocast(monkeypatch) -> list:
    """Whether each forward pass of the model ran under bf16 autocast, in order."""
    seen = []
    forward = CustomLMForCausalLM.forward

    @functools.wraps(forward)  # the Trainer keeps the dataset columns that the signature names
    def spy(self, *args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(CustomLMForCausalLM, "forward", spy)
    return seen


def probe_timings(bf16_faster: bool):
    """A stand-in for the probe's timer: this machine may have no native bf16, and a real timing could go either
    way. The training that follows is real."""
    def timed(config, batch_size, block_size, clock, sampled_softmax=0, device="cpu", bf16=False,
              hidden_optimizer="adamw"):
        timed.optimizers.add(hidden_optimizer)
        return 0.01 if bf16 == bf16_faster else 0.02
    timed.optimizers = set()
    return timed


@pytest.mark.parametrize("bf16", [True, False])
def test_the_sizing_probe_times_the_step_under_the_runs_precision(tmp_path, tokenizer_dir, autocast, bf16):
    """Timed in fp32, a run in bf16 would be sized for a step it does not take (on a CPU with AMX a wide model's
    bf16 step costs 0.74 times the fp32 one, a narrow model's up to 2.1 times)."""
    args = training_arguments(tmp_path, max_train_time="1s", bf16=bf16)
    assert not args.bf16_from_probe  # given: the probe copies it and does not choose
    Path(args.output_dir).mkdir(parents=True)
    size_model(args, data_arguments(tmp_path), AutoTokenizer.from_pretrained(tokenizer_dir), resuming=False)
    assert autocast and set(autocast) == {bf16} and args.bf16 == bf16
    assert ("bf16" in json.loads((Path(args.output_dir) / SIZING_FILE).read_text())["reason"]) == bf16


@pytest.mark.parametrize("bf16_faster", [True, False])
def test_a_model_sized_for_the_budget_takes_the_precision_timed_faster(tmp_path, tokenizer_dir, monkeypatch,
                                                                       autocast, bf16_faster):
    monkeypatch.setattr(sizing, "time_training_step", probe_timings(bf16_faster))
    args = training_arguments(tmp_path, max_steps=2, max_train_time="1h", eval_strategy="no",
                              load_best_model_at_end=False, bf16=not bf16_faster)
    args.bf16_from_probe = True  # what `--bf16` unset on a CPU with AVX512-BF16 or AMX sets
    train_language_model(model_arguments(tokenizer_dir, config_name=None), data_arguments(tmp_path), args)
    saved = json.loads((Path(args.output_dir) / SIZING_FILE).read_text())
    assert saved["bf16"] == args.bf16 == bf16_faster and args.mixed_precision == ("bf16" if bf16_faster else "no")
    assert ("against 0.02 in fp32" if bf16_faster else "faster than 0.02 in bf16") in saved["reason"]
    assert autocast and set(autocast) == {bf16_faster}  # the Trainer trained in the chosen precision


@pytest.mark.parametrize("bf16_faster", [True, False])
def test_a_run_of_a_given_shape_takes_the_precision_timed_faster(tmp_path, tokenizer_dir, monkeypatch, autocast,
                                                                 bf16_faster, caplog):
    probe = probe_timings(bf16_faster)
    monkeypatch.setattr(precision, "time_training_step", probe)
    args = training_arguments(tmp_path, max_steps=2, eval_strategy="no", load_best_model_at_end=False,
                              bf16=not bf16_faster)
    args.bf16_from_probe = True
    with caplog.at_level("INFO", logger="hf_custom_lm"):
        train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args)
    assert args.bf16 == bf16_faster and autocast and set(autocast) == {bf16_faster}
    assert probe.optimizers == {"muon"}  # the run's optimizer step was timed (a model from scratch: Muon)
    assert any(record.getMessage().startswith("Precision: ") for record in caplog.records)


def test_a_given_precision_is_kept_without_timing(tmp_path, tokenizer_dir, monkeypatch, autocast):
    def refuse(*args, **kwargs):
        raise AssertionError("timed a precision the user chose")

    monkeypatch.setattr(precision, "time_training_step", refuse)
    args = training_arguments(tmp_path, max_steps=2, eval_strategy="no", load_best_model_at_end=False, bf16=False)
    train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args)
    assert autocast and not any(autocast)


def test_only_bf16_left_unset_on_a_native_bf16_cpu_is_timed(tmp_path, monkeypatch):
    monkeypatch.setattr(arguments, "fast_bf16_available", lambda: True)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    unset = LMTrainingArguments(output_dir=str(tmp_path), report_to=[])
    assert unset.bf16 and unset.bf16_from_probe == (not torch.accelerator.is_available())
    assert not LMTrainingArguments(output_dir=str(tmp_path), report_to=[], bf16=True).bf16_from_probe
    assert not LMTrainingArguments(output_dir=str(tmp_path), report_to=[], bf16=False).bf16_from_probe
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # accelerate's own setting is a choice too
    assert not LMTrainingArguments(output_dir=str(tmp_path), report_to=[]).bf16_from_probe
    monkeypatch.setattr(arguments, "fast_bf16_available", lambda: False)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    emulated = LMTrainingArguments(output_dir=str(tmp_path), report_to=[])
    assert not emulated.bf16 and not emulated.bf16_from_probe


def test_a_resumed_run_keeps_the_precision_it_started_with(tmp_path, tokenizer_dir, monkeypatch, autocast):
    monkeypatch.setattr(precision, "time_training_step", probe_timings(bf16_faster=True))
    common = dict(eval_strategy="no", load_best_model_at_end=False, bf16=False, save_steps=2)
    first = training_arguments(tmp_path, max_steps=2, **common)
    first.bf16_from_probe = True
    train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), first)
    assert json.loads((Path(first.output_dir) / precision.PRECISION_FILE).read_text())["bf16"] is True

    def refuse(*args, **kwargs):
        raise AssertionError("timed the precision again on resume")

    monkeypatch.setattr(precision, "time_training_step", refuse)
    autocast.clear()
    resumed = training_arguments(tmp_path, max_steps=4, **common)
    resumed.bf16_from_probe, resumed.resume = True, True
    train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), resumed)
    assert resumed.bf16 and autocast and all(autocast)
    state = json.loads((Path(resumed.output_dir) / "trainer_state.json").read_text())
    assert state["global_step"] == 4
