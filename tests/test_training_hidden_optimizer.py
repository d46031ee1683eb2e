"""`--hidden_optimizer` unset: Muon for a model trained from scratch, AdamW where Muon does not fit, the
checkpoint's optimizer when resuming; and the sizing's probe timing the optimizer the run will take."""

from pathlib import Path

import pytest
import torch

from hf_custom_lm.training import LMTrainingArguments, train_language_model
from hf_custom_lm.training import sizing
from hf_custom_lm.training.optimizers import MuonWithAdamW, resolve_hidden_optimizer

from .test_training import (  # noqa: F401  (tokenizer_dir is a fixture)
    data_arguments,
    model_arguments,
    tokenizer_dir,
    training_arguments,
)


def arguments(**kwargs) -> LMTrainingArguments:
    return LMTrainingArguments(output_dir="unused", report_to=[], **kwargs)


def test_unset_it_is_muon_from_scratch_and_adamw_where_muon_does_not_fit(monkeypatch):
    assert resolve_hidden_optimizer(arguments(), from_scratch=True) == "muon"
    assert resolve_hidden_optimizer(arguments(), from_scratch=False) == "adamw"  # continuing from a model
    assert resolve_hidden_optimizer(arguments(optim="adafactor"), from_scratch=True) == "adamw"
    assert resolve_hidden_optimizer(arguments(optim="adamw_torch"), from_scratch=True) == "muon"
    assert resolve_hidden_optimizer(arguments(hidden_optimizer="adamw"), from_scratch=True) == "adamw"
    assert resolve_hidden_optimizer(arguments(hidden_optimizer="muon"), from_scratch=False) == "muon"
    for launcher in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):  # a slice of each matrix per process
        args = arguments()  # built first: under DeepSpeed's variable the arguments need DeepSpeed installed
        with monkeypatch.context() as patch:
            patch.setenv(launcher, "true")
            assert resolve_hidden_optimizer(args, from_scratch=True) == "adamw"


def test_unset_it_resumes_with_the_checkpoints_optimizer(tmp_path):
    muon, adamw = tmp_path / "muon", tmp_path / "adamw"
    muon.mkdir(), adamw.mkdir()
    torch.save({"muon": {"state": {}, "param_groups": []}, "adamw": {"state": {}, "param_groups": []}},
               muon / "optimizer.pt")
    torch.save({"state": {}, "param_groups": []}, adamw / "optimizer.pt")  # a run from before Muon's default
    assert resolve_hidden_optimizer(arguments(), from_scratch=True, checkpoint=str(adamw)) == "adamw"
    assert resolve_hidden_optimizer(arguments(), from_scratch=False, checkpoint=str(muon)) == "muon"
    no_state = tmp_path / "no_state"  # `save_only_model`: the rule decides
    no_state.mkdir()
    assert resolve_hidden_optimizer(arguments(), from_scratch=True, checkpoint=str(no_state)) == "muon"


def test_a_run_from_scratch_trains_with_muon_and_a_run_from_a_model_with_adamw(tmp_path, tokenizer_dir):
    scratch = training_arguments(tmp_path / "scratch", max_steps=2, save_steps=2, eval_steps=2)
    train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), scratch)
    assert scratch.hidden_optimizer == "muon" and scratch.embedding_lr_multiplier == 1.0  # 3x is AdamW's
    state = torch.load(Path(scratch.output_dir) / "checkpoint-2" / "optimizer.pt", weights_only=True)
    assert set(state) == {"muon", "adamw"} and state["muon"]["state"]

    continued = training_arguments(tmp_path / "continued", max_steps=2, save_steps=2, eval_steps=2)
    model_args = model_arguments(tokenizer_dir)
    model_args.model_name_or_path, model_args.config_name = scratch.output_dir, None
    train_language_model(model_args, data_arguments(tmp_path), continued)
    assert continued.hidden_optimizer == "adamw"
    state = torch.load(Path(continued.output_dir) / "checkpoint-2" / "optimizer.pt", weights_only=True)
    assert "muon" not in state and state["state"]


@pytest.mark.parametrize("hidden_optimizer", ["adamw", "muon"])
def test_the_sizing_probe_times_the_runs_optimizer(monkeypatch, hidden_optimizer):
    built = []

    class Recorded(MuonWithAdamW):
        def __init__(self, *args, **kwargs):
            built.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sizing, "MuonWithAdamW", Recorded)
    monkeypatch.setattr(sizing, "SHAPES", sizing.SHAPES[:1])
    choice = sizing.size_for_budget(5.0, batch_size=2, block_size=16, vocab_size=256,
                                    hidden_optimizer=hidden_optimizer)
    assert bool(built) == (hidden_optimizer == "muon") and choice.seconds_per_step > 0
    assert ("Muon" in choice.reason) == (hidden_optimizer == "muon")
    if built:  # the decoder's matrices in Muon, the embeddings and norms in AdamW
        assert all(p.ndim == 2 for group in built[0].muon.param_groups for p in group["params"])
        assert any(p.ndim == 1 for group in built[0].adamw.param_groups for p in group["params"])


def test_under_muon_the_sizing_takes_a_shape_that_sees_fewer_tokens_a_parameter(monkeypatch):
    monkeypatch.setattr(sizing, "time_training_step", lambda *args, **kwargs: 0.01)  # every shape alike
    # 2,930 steps of 8 x 128, 3.0M tokens: 2.7 a parameter for 96 x 3, 2.1 for 128 x 2, 1.0 for 192 x 3
    adamw = sizing.size_for_budget(29.3, batch_size=8, block_size=128, vocab_size=8192)
    muon = sizing.size_for_budget(29.3, batch_size=8, block_size=128, vocab_size=8192, hidden_optimizer="muon")
    assert (adamw.hidden_size, muon.hidden_size, muon.num_hidden_layers) == (96, 128, 2)
    assert f"{sizing.MUON_TOKENS_PER_PARAMETER} tokens per parameter" in muon.reason
    # short of text (three passes): the floor scales alike, 192 x 3 at 1.0 a parameter becomes 256 x 4 at 0.5
    tokens = adamw.expected_tokens
    short_adamw = sizing.size_for_budget(29.3, 8, 128, 8192, train_tokens=tokens // 3)
    short_muon = sizing.size_for_budget(29.3, 8, 128, 8192, train_tokens=tokens // 3, hidden_optimizer="muon")
    assert (short_adamw.hidden_size, short_muon.hidden_size) == (192, 256)
    assert f"{sizing.MUON_DATA_LIMITED_TOKENS_PER_PARAMETER} tokens per parameter going over" in short_muon.reason
