"""Trainer callbacks: stop on a non-finite loss, early stopping that survives a resume."""

import json
import math
from pathlib import Path

from transformers import EarlyStoppingCallback, TrainerCallback

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


def build_callbacks(training_args, checkpoint: str | Path | None = None) -> list:
    """The non-finite-loss stop and early stopping; resuming from `checkpoint`, early stopping continues its
    count of evaluations without improvement (the best metric itself is part of the restored TrainerState)."""
    callbacks = [NonFiniteLossCallback()]
    if training_args.early_stopping_patience:
        early_stopping = EarlyStoppingCallback(
            early_stopping_patience=training_args.early_stopping_patience,
            early_stopping_threshold=training_args.early_stopping_threshold,
        )
        if checkpoint is not None:
            # The Trainer restores callback state only with `restore_callback_states_from_checkpoint`, which
            # also brings back the checkpoint's patience and threshold: keep this run's, restore the count.
            state = json.loads((Path(checkpoint) / TRAINER_STATE_NAME).read_text())
            saved = state.get("stateful_callbacks", {}).get("EarlyStoppingCallback") or {}
            if isinstance(saved, list):  # one entry per EarlyStoppingCallback; ours comes first
                saved = saved[0]
            counter = saved.get("attributes", {}).get("early_stopping_patience_counter", 0)
            early_stopping.early_stopping_patience_counter = counter
        callbacks.append(early_stopping)
    return callbacks
