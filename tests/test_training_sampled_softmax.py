"""`--sampled_softmax`: the sampled loss, its candidates, its arguments, and a run that switches to the full
softmax when the learning rate decays."""

import math
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from hf_custom_lm.model.kernels_custom_lm import linear_cross_entropy
from hf_custom_lm.training import LMTrainingArguments, train_language_model
from hf_custom_lm.training import sampled_softmax
from hf_custom_lm.training.sampled_softmax import AUTO_DRAWS, CandidateSampler, resolve_sampled_softmax
from hf_custom_lm.training.sizing import size_for_budget

from .test_training import (  # noqa: F401  (tokenizer_dir is a fixture)
    data_arguments,
    logged,
    model_arguments,
    tokenizer_dir,
    training_arguments,
)


def loss_and_grads(hidden, weight, labels, **kwargs):
    hidden, weight = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = linear_cross_entropy(hidden, weight, labels, **kwargs)
    loss.backward()
    return loss, hidden.grad, weight.grad


def inputs(vocab_size=40, dim=8):
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, dim, dtype=torch.float64)
    weight = torch.randn(vocab_size, dim, dtype=torch.float64)
    labels = torch.randint(0, vocab_size, (3, 7))
    labels[0, :3] = -100
    return hidden, weight, labels


def test_a_sampled_softmax_over_every_token_is_the_full_softmax():
    hidden, weight, labels = inputs()
    every = lambda targets: (torch.arange(40), torch.zeros(40, dtype=torch.float64))  # noqa: E731
    for expected, got in zip(loss_and_grads(hidden, weight, labels),
                             loss_and_grads(hidden, weight, labels, candidate_sampler=every)):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("num_items", [None, 29])
def test_sampled_loss_and_gradients_are_cross_entropy_over_the_candidates(num_items):
    """Against autograd through the plain expression: logits of the candidates' rows minus their log-probability
    of being drawn, cross-entropy against each target's column; rows that are no candidate get no gradient."""
    hidden, weight, labels = inputs()
    targets = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:].reshape(-1)
    counted = targets[targets != -100]
    candidates = torch.unique(torch.cat((counted, torch.tensor([0, 5, 39]))))
    log_inclusion = -torch.rand(len(candidates), dtype=torch.float64)
    kwargs = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    loss, grad_hidden, grad_weight = loss_and_grads(
        hidden, weight, labels, candidate_sampler=lambda t: (candidates, log_inclusion), **kwargs
    )

    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    logits = h.reshape(-1, 8) @ w[candidates].T - log_inclusion
    columns = torch.where(targets != -100, torch.searchsorted(candidates, targets.clamp(min=0)), -100)
    summed = torch.nn.functional.cross_entropy(logits, columns, ignore_index=-100, reduction="sum")
    expected = summed / (num_items if num_items is not None else len(counted))
    expected.backward()
    torch.testing.assert_close(loss, expected.float())  # the loss is fp32, as the full softmax's
    torch.testing.assert_close(grad_hidden, h.grad)
    torch.testing.assert_close(grad_weight, w.grad)
    outside = torch.ones(40, dtype=torch.bool)
    outside[candidates] = False
    assert outside.any() and not grad_weight[outside].any()


def test_candidates_hold_every_target_sorted_with_the_log_probability_of_a_draw():
    sampler = CandidateSampler(vocab_size=50, num_draws=6, seed=3)
    targets = torch.tensor([7, 7, 7, 7, 12, 49])
    candidates, log_inclusion = sampler(targets)
    assert torch.equal(candidates, torch.unique(candidates)) and set(targets.tolist()) <= set(candidates.tolist())
    frequencies = (1 + torch.bincount(targets, minlength=50)) / (50 + len(targets))  # counts start at one
    expected = torch.log(1 - (1 - frequencies[candidates]) ** 6)
    torch.testing.assert_close(log_inclusion, expected.float())
    assert len(candidates) <= 6 + 3
    again, _ = CandidateSampler(vocab_size=50, num_draws=6, seed=3)(targets)
    assert torch.equal(again, candidates)  # its own generator: the same seed draws the same candidates


def test_sampled_softmax_arguments_are_checked():
    with pytest.raises(ValueError, match="sampled_softmax.*>= 0.*got -5"):
        LMTrainingArguments(output_dir="x", sampled_softmax=-5, report_to=[])
    budgeted = LMTrainingArguments(output_dir="x", max_train_time="5m", report_to=[])
    assert resolve_sampled_softmax(budgeted, 8192) == AUTO_DRAWS  # unset: on for a budget and a large vocabulary
    assert resolve_sampled_softmax(budgeted, 2048) == 0 and resolve_sampled_softmax(budgeted, 8192, False) == 0
    assert resolve_sampled_softmax(LMTrainingArguments(output_dir="x", report_to=[]), 8192) == 0
    given = LMTrainingArguments(output_dir="x", sampled_softmax=600, report_to=[])
    assert resolve_sampled_softmax(given, 8192) == 600
    with pytest.raises(ValueError, match="600 draws.*512 tokens.*0 for the full softmax"):
        resolve_sampled_softmax(given, 512)
    with pytest.raises(ValueError, match="needs the fused loss.*fused_loss=false"):
        resolve_sampled_softmax(given, 8192, fused_loss=False)


class SamplerSeen(TrainerCallback):
    """Whether the model had a candidate sampler at each evaluation."""

    def __init__(self):
        self.at_evaluation = []

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self.at_evaluation.append(model.loss_candidate_sampler is not None)


def test_a_run_trains_on_the_sampled_softmax_until_the_decay_then_on_the_full_one(tmp_path, tokenizer_dir,
                                                                                 monkeypatch, caplog):
    draws = []
    call = CandidateSampler.__call__
    monkeypatch.setattr(CandidateSampler, "__call__", lambda self, t: draws.append(len(t)) or call(self, t))
    seen = SamplerSeen()
    # 8 steps, the last half without the sampler (no time budget: the fraction is one of the steps)
    args = training_arguments(tmp_path, max_steps=8, sampled_softmax=64, lr_decay_fraction=0.5, eval_steps=2)
    with caplog.at_level("INFO", logger="hf_custom_lm"):
        metrics = train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args,
                                       extra_callbacks=[seen])
    assert len(draws) == 4 and all(draws)  # one call per sampled step, none in evaluation or after the switch
    assert seen.at_evaluation[-1] is False  # the final evaluation and the saved model: the full softmax
    assert any("sampled softmax of 64 draws" in r.getMessage() for r in caplog.records)
    # the sampled steps log the sampled loss, which reads lower than the full softmax's; the model learned
    assert len(logged(Path(args.output_dir), "loss")) == 8 and metrics["eval_loss"] < math.log(8192)


def test_the_sizing_probe_times_the_sampled_step(monkeypatch):
    calls = []
    call = CandidateSampler.__call__
    monkeypatch.setattr(sampled_softmax.CandidateSampler, "__call__", lambda self, t: calls.append(1) or call(self, t))
    plain = size_for_budget(0.5, batch_size=2, block_size=16, vocab_size=512)
    assert not calls and "sampled" not in plain.reason
    sampled = size_for_budget(0.5, batch_size=2, block_size=16, vocab_size=512, sampled_softmax=64)
    assert calls and "sampled softmax of 64 draws" in sampled.reason
