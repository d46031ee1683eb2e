"""The loss-curve figure of a model card, and the two facts of a Trainer state it marks.

Input is the Trainer's state as a dict (`dataclasses.asdict(trainer.state)` or a run's
`trainer_state.json`): `log_history`, the best checkpoint, the early-stopping callback.
"""

from pathlib import Path

LOSS_CURVE_FILENAME = "loss_curve.png"


def best_step(trainer_state: dict) -> int | None:
    """The step of the best checkpoint, or None when the run kept no best model."""
    if trainer_state.get("best_global_step") is not None:
        return trainer_state["best_global_step"]
    checkpoint = trainer_state.get("best_model_checkpoint")  # ".../checkpoint-120" in older states
    if checkpoint and Path(checkpoint).name.startswith("checkpoint-"):
        return int(Path(checkpoint).name.split("-")[-1])
    return None


def stopped_early(trainer_state: dict) -> bool:
    """True when an early-stopping callback was active and training ended before `max_steps`."""
    return "EarlyStoppingCallback" in (trainer_state.get("stateful_callbacks") or {}) and (
        0 < trainer_state.get("global_step", 0) < trainer_state.get("max_steps", 0)
    )


def loss_curve_figure(trainer_state: dict):
    """Train and eval loss against optimizer step, the best checkpoint (and an early stop) marked.

    A matplotlib `Figure` on the Agg canvas (no pyplot global state, no display), or None when
    `log_history` holds no loss.
    """
    history = trainer_state.get("log_history") or []
    train = [(row["step"], row["loss"]) for row in history if "loss" in row and "step" in row]
    # First evaluation per step: a final `evaluate()` of the restored best weights repeats the last step.
    evals = {}
    for row in history:
        if "eval_loss" in row and "step" in row:
            evals.setdefault(row["step"], row["eval_loss"])
    evals = list(evals.items())
    if not train and not evals:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(7, 4), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if train:
        axes.plot(*zip(*train), label="train loss", color="tab:blue", linewidth=1.2)
    if evals:
        axes.plot(*zip(*evals), label="eval loss", color="tab:orange", marker="o", markersize=3)
    best = best_step(trainer_state)
    best_eval = dict(evals).get(best)
    if best_eval is not None:
        axes.plot([best], [best_eval], marker="*", markersize=14, color="tab:red", linestyle="none",
                  label=f"best checkpoint (step {best}, eval loss {best_eval:.3f})")
    if stopped_early(trainer_state):
        axes.axvline(trainer_state["global_step"], color="grey", linestyle="--",
                     label=f"early stop (step {trainer_state['global_step']})")
    axes.set_xlabel("optimizer step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("cross-entropy loss (nats per token)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def plot_loss_curve(trainer_state: dict, path: str | Path) -> Path | None:
    """Save `loss_curve_figure` as a PNG at `path`; None (and no file) when there is nothing to plot."""
    figure = loss_curve_figure(trainer_state)
    if figure is None:
        return None
    figure.savefig(path)
    return Path(path)


def loss_curve_caption(trainer_state: dict | None) -> str:
    """The sentence under the figure in the card: what its marks mean."""
    parts = ["Loss in nats per token against optimizer step."]
    if trainer_state and best_step(trainer_state) is not None:
        parts.append(f"The star marks the best checkpoint (step {best_step(trainer_state)}).")
    if trainer_state and stopped_early(trainer_state):
        parts.append("The dashed line marks where early stopping ended training.")
    return " ".join(parts)


__all__ = [
    "LOSS_CURVE_FILENAME",
    "best_step",
    "loss_curve_caption",
    "loss_curve_figure",
    "plot_loss_curve",
    "stopped_early",
]
