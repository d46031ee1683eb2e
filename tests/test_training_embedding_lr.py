"""`--embedding_lr_multiplier`: the token embeddings (and the head tied to them) train at a multiple of the
learning rate, 3x by default for a model trained from scratch with AdamW, 1x with Muon or when training
continues from a model."""

from pathlib import Path

import pytest
import torch

from hf_custom_lm.training import train_language_model
from hf_custom_lm.training.optimizers import EMBEDDING_LR_MULTIPLIER, embedding_group_apart

from .test_training import (  # noqa: F401  (tokenizer_dir is a fixture)
    data_arguments,
    model_arguments,
    tokenizer_dir,
    training_arguments,
)


def saved_groups(run: Path, step: int) -> list[dict]:
    """The optimizer's parameter groups as the checkpoint saved them (params as indices)."""
    state = torch.load(run / f"checkpoint-{step}" / "optimizer.pt", weights_only=True)
    return state["adamw"]["param_groups"] if "adamw" in state else state["param_groups"]


def test_the_embedding_leaves_its_group_with_a_multiple_of_its_rate():
    embedding, other, norm = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    groups = [{"params": [other, embedding], "lr": 0.1, "weight_decay": 0.0}, {"params": [norm], "lr": 0.1}]
    split = embedding_group_apart(groups, embedding, 3.0)
    assert [len(g["params"]) for g in split] == [1, 1, 1]
    (own,) = [g for g in split if g["params"][0] is embedding]
    assert own["lr"] == pytest.approx(0.3) and own["weight_decay"] == 0.0
    assert all(g["lr"] == 0.1 for g in split if g is not own)
    assert embedding_group_apart(groups[1:], embedding, 3.0) == groups[1:]  # frozen: in no group


def test_a_model_from_scratch_trains_its_embeddings_faster_under_adamw_and_a_continued_one_does_not(
        tmp_path, tokenizer_dir):
    args = training_arguments(tmp_path, max_steps=2, save_steps=2, eval_steps=2, hidden_optimizer="adamw")
    train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args)
    assert args.embedding_lr_multiplier == EMBEDDING_LR_MULTIPLIER
    rates = sorted(g["initial_lr"] for g in saved_groups(Path(args.output_dir), 2))
    assert rates[-1] == pytest.approx(EMBEDDING_LR_MULTIPLIER * args.learning_rate) and rates[0] == args.learning_rate
    (embedding_group,) = [g for g in saved_groups(Path(args.output_dir), 2) if g["initial_lr"] == rates[-1]]
    assert len(embedding_group["params"]) == 1

    continued = training_arguments(tmp_path / "continued", max_steps=2, save_steps=2, eval_steps=2)
    model_args = model_arguments(tokenizer_dir, model_name_or_path=args.output_dir, config_name=None)
    train_language_model(model_args, data_arguments(tmp_path), continued)
    assert continued.embedding_lr_multiplier == 1.0
    assert {g["initial_lr"] for g in saved_groups(Path(continued.output_dir), 2)} == {continued.learning_rate}


def test_muon_gives_the_embeddings_their_rate_in_its_adamw_part(tmp_path, tokenizer_dir):
    args = training_arguments(tmp_path, max_steps=2, save_steps=2, eval_steps=2, hidden_optimizer="muon",
                              embedding_lr_multiplier=5.0)
    train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args)
    groups = saved_groups(Path(args.output_dir), 2)
    rates = sorted(g["initial_lr"] for g in groups)
    assert rates[-1] == pytest.approx(5.0 * args.learning_rate) and rates[0] == args.learning_rate
    assert all(g["lr"] < g["initial_lr"] for g in groups)  # the cosine schedule reached the AdamW part


def test_resuming_with_another_multiplier_says_which_flag_to_pass(tmp_path, tokenizer_dir):
    args = training_arguments(tmp_path, max_steps=2, save_steps=2, eval_steps=2, embedding_lr_multiplier=2.0)
    train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args)
    resumed = training_arguments(tmp_path, max_steps=4, save_steps=2, eval_steps=2, resume=True)
    with pytest.raises(ValueError, match="Resume with the `--embedding_lr_multiplier`"):
        train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), resumed)


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_a_multiplier_that_is_not_positive_is_refused(tmp_path, value):
    with pytest.raises(ValueError, match="`embedding_lr_multiplier` must be > 0"):
        training_arguments(tmp_path, embedding_lr_multiplier=value)
