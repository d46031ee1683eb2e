"""Trainer callbacks: stop on a non-finite loss, early stopping and a time budget that survive a resume."""

import json
import math
from pathlib import Path

from transformers import EarlyStoppingCallback, TrainerCallback

from .budget import TimeBudgetCallback, TrainingClock
from .checkpoints import TRAINER_STATE_NAME


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss or gradient norm."""


ADVICE = (
    "Lower `learning_rate`, keep gradient clipping on (`max_grad_norm`), or turn off `bf16`; then restart, or "
    "continue from the last good checkpoint with `--resume`."
)


class NonFiniteLossCallback(TrainerCallback):
    """Raise when a logged training loss or gradient norm, or an evaluation loss, is NaN or inf.

    The Trainer logs the loss averaged over all processes, so every rank sees the same value and stops
    together. The check runs at each log, before the checkpoint of that step is written, so with
    `save_steps` a multiple of `logging_steps` no checkpoint holding the diverged weights is saved.
    Weights that diverge between two logs are caught by the evaluation that precedes each save (with
    `load_best_model_at_end`, every save step is an evaluation step).
    Needs `logging_nan_inf_filter=False`; the filter would replace NaN losses with the running mean.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(value):
                raise NonFiniteLossError(f"Training {key} is {value} at step {state.global_step}. {ADVICE}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        for key, value in (metrics or {}).items():
            if key.endswith("_loss") and not math.isfinite(value):
                raise NonFiniteLossError(f"Evaluation {key} is {value} at step {state.global_step}. {ADVICE}")


def _saved_attributes(checkpoint: str | Path | None, callback_name: str) -> dict:
    """The attributes a stateful callback saved in `checkpoint`'s trainer state (first of its kind), or {}.

    The Trainer restores callback state only with `restore_callback_states_from_checkpoint`, which also brings
    back the checkpoint's arguments (patience, budget): this run's arguments are kept, the counters restored."""
    if checkpoint is None:
        return {}
    state = json.loads((Path(checkpoint) / TRAINER_STATE_NAME).read_text())
    saved = state.get("stateful_callbacks", {}).get(callback_name) or {}
    if isinstance(saved, list):
        saved = saved[0]
    return saved.get("attributes", {})


def build_callbacks(training_args, checkpoint: str | Path | None = None) -> list:
    """The non-finite-loss stop, early stopping and the time budget. Resuming from `checkpoint`, early stopping
    continues its count of evaluations without improvement (the best metric itself is part of the restored
    TrainerState) and the budget its clock."""
    callbacks = [NonFiniteLossCallback()]
    if training_args.early_stopping_patience:
        early_stopping = EarlyStoppingCallback(
            early_stopping_patience=training_args.early_stopping_patience,
            early_stopping_threshold=training_args.early_stopping_threshold,
        )
        saved = _saved_attributes(checkpoint, "EarlyStoppingCallback")
        early_stopping.early_stopping_patience_counter = saved.get("early_stopping_patience_counter", 0)
        callbacks.append(early_stopping)
    if getattr(training_args, "max_train_time", None) is not None:
        offset = _saved_attributes(checkpoint, "TimeBudgetCallback").get("elapsed", 0.0)
        clock = TrainingClock(training_args.max_train_seconds, training_args.train_time_clock, offset=offset)
        callbacks.append(TimeBudgetCallback(clock))
    return callbacks
