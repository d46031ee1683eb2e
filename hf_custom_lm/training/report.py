"""What a training run tells its user at the end: how long, how far, the best step and why it stopped."""

import logging

logger = logging.getLogger(__name__)


def stop_reason(trainer) -> str:
    """`time budget`, `early stopping`, `max_steps` or `epochs`: why the training loop ended."""
    budget = trainer.time_budget
    if budget is not None and budget.stop_reason:
        return budget.stop_reason
    state, args = trainer.state, trainer.args
    if args.max_steps > 0 and state.global_step >= args.max_steps:
        return "max_steps"
    if state.max_steps and state.global_step < state.max_steps:
        return "early stopping"
    return "epochs"


def best_step(trainer) -> int | None:
    """The step of the best checkpoint (`checkpoint-<step>`), when the run kept one."""
    checkpoint = trainer.state.best_model_checkpoint
    return int(checkpoint.rsplit("-", 1)[-1]) if checkpoint else None


def tensorboard_folder(trainer) -> str | None:
    """Where the Trainer's TensorBoard callback wrote this run's events (`output_dir/runs/<date_host>`)."""
    for callback in trainer.callback_handler.callbacks:
        folder = getattr(callback, "logging_dir", None)
        if type(callback).__name__ == "TensorBoardCallback" and folder:
            return folder
    return None


def run_summary(trainer, block_size: int) -> dict:
    """`train_*` metrics for the summary, logged in one line with the TensorBoard folder."""
    state, args = trainer.state, trainer.args
    tokens_per_step = args.train_batch_size * args.gradient_accumulation_steps * args.world_size * block_size
    budget = trainer.time_budget
    summary = {
        "train_steps": state.global_step,
        "train_tokens": state.global_step * tokens_per_step,
        "train_stop_reason": stop_reason(trainer),
        "train_best_step": best_step(trainer),
    }
    if budget is not None:
        summary["train_clock_seconds"] = round(budget.clock.elapsed(), 1)
    summary = {key: value for key, value in summary.items() if value is not None}
    line = (
        f"Stopped by {summary['train_stop_reason']} after {state.global_step} steps "
        f"({summary['train_tokens']:,} tokens)"
        + (f", {summary['train_clock_seconds']:.0f} s of the {budget.clock.budget:.0f} s budget ({budget.clock.kind} "
           "clock)" if budget is not None else "")
        + (f"; best step {summary['train_best_step']}" if "train_best_step" in summary else "")
        + "."
    )
    if args.should_log:
        logger.info(line)
        folder = tensorboard_folder(trainer)
        if folder is not None:
            logger.info(f"TensorBoard logs: {folder} (`tensorboard --logdir {folder}`)")
    return summary
