"""`--sampled_softmax`: train the output head on a sampled softmax until the learning rate decays.

A small model's step is mostly its output head: three (N, V) products and a softmax over the V tokens of the
vocabulary for the N tokens of a batch. A sampled softmax replaces V by the C candidates of the step: the
batch's targets and `num_draws` tokens drawn from the frequencies of the targets seen so far, each
candidate's logit lowered by the log of its probability of being drawn (`LinearCrossEntropy`). The step costs
less and its gradient stays close to the full one, so a time budget buys more steps (and, through the
sizing's probe, a larger model). The estimate is biased, so the decay phase of the learning rate, the
evaluations and everything after training use the full softmax. The training loss logged while it is on is
the sampled one, lower than the full softmax's.
"""

import logging

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

# Draws a step when `sampled_softmax` is unset and the run has a time budget and a vocabulary of at least
# `AUTO_MIN_VOCAB_SIZE` tokens: the setting measured (benchmarks/RESULTS.md, 8192 tokens). A smaller
# vocabulary's full softmax costs less, and it was not measured.
AUTO_DRAWS = 1024
AUTO_MIN_VOCAB_SIZE = 8192


class CandidateSampler:
    """Candidates of a sampled softmax: the counted targets of a step plus `num_draws` tokens drawn, with
    replacement, in proportion to how often each token was a target so far (every count starts at one).

    Called with the targets (M,), returns the sorted candidate ids (C,) and, for each, the log of the
    probability that it is among the draws, log(1 - (1 - q)^num_draws) for a token of frequency q.
    """

    def __init__(self, vocab_size: int, num_draws: int, seed: int = 0):
        self.vocab_size, self.num_draws, self.seed = vocab_size, num_draws, seed
        self.counts = torch.ones(vocab_size)
        self.generator = None

    def __call__(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.generator is None or self.counts.device != targets.device:
            self.counts = self.counts.to(targets.device)
            self.generator = torch.Generator(targets.device).manual_seed(self.seed)
        self.counts += torch.bincount(targets, minlength=self.vocab_size)
        frequencies = self.counts / self.counts.sum()  # (V,)
        draws = torch.multinomial(frequencies, self.num_draws, replacement=True, generator=self.generator)
        candidates = torch.unique(torch.cat((draws, targets)))  # (C,), sorted
        drawn = -torch.expm1(self.num_draws * torch.log1p(-frequencies[candidates]))  # 1 - (1 - q)^num_draws
        return candidates, drawn.clamp_min(torch.finfo(drawn.dtype).tiny).log()


def resolve_sampled_softmax(training_args, vocab_size: int, fused_loss: bool = True) -> int:
    """The draws a step the run uses (0: the full softmax): `--sampled_softmax`, or unset, `AUTO_DRAWS` for a
    time-budgeted run with a vocabulary of `AUTO_MIN_VOCAB_SIZE` tokens or more."""
    draws = getattr(training_args, "sampled_softmax", 0)
    if draws is None:
        auto = training_args.max_train_time is not None and vocab_size >= AUTO_MIN_VOCAB_SIZE and fused_loss
        return AUTO_DRAWS if auto else 0
    if draws and not fused_loss:
        raise ValueError(
            f"`sampled_softmax` {draws} needs the fused loss, which `fused_loss=false` turns off; drop one of the two."
        )
    if draws >= vocab_size:
        raise ValueError(
            f"`sampled_softmax` {draws} draws a step is not fewer than the vocabulary's {vocab_size} tokens: the "
            "full softmax would cost less. Pass fewer (e.g. a tenth of the vocabulary), or 0 for the full softmax."
        )
    return draws


class SampledSoftmaxCallback(TrainerCallback):
    """Attaches a `CandidateSampler` to the model for the steps before the learning rate decays: while the
    fraction of training done (of the time budget's `clock`, or of the steps) is under `1 - decay_fraction`.
    Detached for the rest of the run and at its end, so the trained model computes the full softmax."""

    def __init__(self, num_draws: int, decay_fraction: float, clock=None, seed: int = 0):
        self.num_draws, self.decay_fraction, self.clock, self.seed = num_draws, decay_fraction, clock, seed
        self.model = None

    def _spent(self, state) -> float:
        steps = state.global_step / state.max_steps if state.max_steps else 0.0
        return max(steps, self.clock.fraction() if self.clock is not None else 0.0)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model = model
        if self._spent(state) < 1 - self.decay_fraction:
            seed = self.seed + args.process_index  # each process draws its own candidates
            model.loss_candidate_sampler = CandidateSampler(model.config.vocab_size, self.num_draws, seed)

    def on_step_begin(self, args, state, control, **kwargs):
        if self.model.loss_candidate_sampler is not None and self._spent(state) >= 1 - self.decay_fraction:
            self.detach()
            logger.info(f"Full softmax from step {state.global_step} on (the learning rate decays).")

    def on_train_end(self, args, state, control, **kwargs):
        self.detach()

    def detach(self) -> None:
        if self.model is not None:
            self.model.loss_candidate_sampler = None
