"""Progress in log files: when stderr is not a terminal (a file, a pipe, a job scheduler), one plain line per
logging step replaces tqdm's bars, whose carriage returns and escape codes fill a log file with redrawn bars.

    step 40/500 (8%): loss 5.213, grad_norm 0.8123, learning_rate 0.003, epoch 0.0468 | 1 min 2 s, 11 min 54 s left
"""

import sys
import time

from transformers import ProgressCallback, TrainerCallback


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class PlainProgressCallback(TrainerCallback):
    """On the main process, each log (every `logging_steps`, each evaluation, the end) as one line on `stream`:
    the step, the logged values, the time spent and, from the pace so far, the time left to `max_steps`."""

    def __init__(self, stream=None, budget=None):
        self.stream = stream
        self.budget = budget  # a `TimeBudgetCallback`: steps have no planned total, time left is the budget's
        self.started = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        line = f"step {state.global_step}"
        if state.max_steps and self.budget is None:
            line += f"/{state.max_steps} ({state.global_step / state.max_steps:.0%})"
        values = {key: value for key, value in logs.items() if key != "total_flos"}
        line += ": " + ", ".join(f"{key} {_value(value)}" for key, value in values.items())
        if self.started is not None:
            spent = time.monotonic() - self.started
            line += f" | {_duration(spent)}"
            if self.budget is not None:
                clock = self.budget.clock
                line += f", {_duration(max(0.0, clock.budget - clock.elapsed()))} of the budget left ({clock.kind} clock)"
            elif 0 < state.global_step < state.max_steps:
                line += f", {_duration(spent / state.global_step * (state.max_steps - state.global_step))} left"
        print(line, file=self.stream or sys.stderr, flush=True)


def use_plain_progress(trainer, stream=None) -> bool:
    """Swap the Trainer's tqdm bars for `PlainProgressCallback` when `stream` (default stderr) is not a terminal or
    the run has a time budget; returns whether it did. `--disable_tqdm true` keeps transformers' own `PrinterCallback`."""
    stream = stream or sys.stderr
    has_bars = any(isinstance(callback, ProgressCallback) for callback in trainer.callback_handler.callbacks)
    budget = getattr(trainer, "time_budget", None)  # a budgeted run has no step total: plain lines on a terminal too
    if not has_bars or (stream.isatty() and budget is None):
        return False
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(PlainProgressCallback(stream, budget))
    return True
