"""Evaluation metrics: perplexity and bits per byte from a mean cross-entropy, accuracy for classifiers.

Bits per byte divides by the UTF-8 bytes per token of the evaluated text, so unlike
perplexity it compares models with different tokenizers.
"""

import math

import numpy as np


def bits_per_byte(loss: float, bytes_per_token: float) -> float:
    """Mean cross-entropy in nats per token -> bits per UTF-8 byte, comparable across tokenizers."""
    if bytes_per_token <= 0:
        raise ValueError(f"bytes_per_token={bytes_per_token} must be positive.")
    return loss / bytes_per_token / math.log(2)


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy in nats per token); inf when the loss is too large to exponentiate."""
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def language_model_metrics(loss: float, bytes_per_token: float | None, prefix: str = "eval") -> dict[str, float]:
    """`{prefix}_perplexity` and, when the text's bytes per token is known, `{prefix}_bits_per_byte`."""
    metrics = {f"{prefix}_perplexity": perplexity(loss)}
    if bytes_per_token is not None:
        metrics[f"{prefix}_bits_per_byte"] = bits_per_byte(loss, bytes_per_token)
    return metrics


def classification_accuracy(eval_prediction) -> dict[str, float]:
    """`compute_metrics` for the Trainer: logits (N, num_labels) and label ids (N,) -> accuracy."""
    logits, labels = eval_prediction.predictions, eval_prediction.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}
