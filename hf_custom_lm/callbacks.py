"""Trainer callbacks: stop on a non-finite loss."""

import math

from transformers import TrainerCallback


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
