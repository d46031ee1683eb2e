"""Time-budgeted training: `--max_train_time 10m` ends the run at the budget with the learning rate decayed.

The learning-rate schedule runs on the fraction of the budget spent, not on a step count guessed in advance:
linear warm-up over `warmup_fraction`, constant, then linear decay to zero over the last `decay_fraction`
(warm-up / stable / decay). Evaluation and checkpoints come at fixed fractions of the budget, on a sample of
the validation set; the run ends with the full evaluation. The clock counts the training loop (evaluation
and checkpoint saving included), wall time by default or the process's CPU time (`--train_time_clock cpu`,
for comparisons on a shared machine), and is saved with every checkpoint so `--resume` continues the
remaining budget. Under several processes, rank 0's clock is broadcast at every step, so all ranks use one
learning rate and stop at the same step.
"""

import re
import time

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

UNITS = {"s": 1, "m": 60, "h": 3600}
CLOCKS = ("wall", "cpu")


def parse_duration(text: str | float | int) -> float:
    """`300`, `300s`, `10m`, `1.5h` -> seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text))
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(
            f"`max_train_time` {text!r} is not a positive duration: write seconds (`300`) or a number with a unit "
            "s, m or h (`300s`, `10m`, `2h`)."
        )
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


class TrainingClock:
    """Seconds of training spent so far: `offset` (restored from a checkpoint) plus this process's share."""

    def __init__(self, budget: float, kind: str = "wall", offset: float = 0.0):
        if kind not in CLOCKS:
            raise ValueError(f"`train_time_clock` must be one of {CLOCKS}, got {kind!r}.")
        self.budget, self.kind, self.offset = budget, kind, offset
        self._start = None
        self.synced = offset  # the value every rank agrees on, updated once per step

    def _now(self) -> float:
        return time.process_time() if self.kind == "cpu" else time.monotonic()

    def start(self) -> None:
        self._start = self._now()

    def elapsed(self) -> float:
        return self.offset + (0.0 if self._start is None else self._now() - self._start)

    def sync(self) -> float:
        """This step's elapsed time, rank 0's under several processes."""
        value = self.elapsed()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            shared = torch.tensor([value], dtype=torch.float64)
            torch.distributed.broadcast(shared, src=0)
            value = shared.item()
        self.synced = value
        return value

    def fraction(self) -> float:
        return min(1.0, self.synced / self.budget)


def budget_lr_lambda(clock: TrainingClock, warmup_fraction: float, decay_fraction: float, max_steps: int = 0):
    """The learning-rate factor for the fraction of the budget spent (warm-up / stable / decay to zero); with
    `max_steps` too, the larger of the time and step fractions, so the rate decays by whichever ends first."""

    def factor(step: int) -> float:
        spent = max(clock.fraction(), step / max_steps if max_steps > 0 else 0.0)
        if warmup_fraction > 0 and spent < warmup_fraction:
            return max(spent / warmup_fraction, 1e-3)
        if decay_fraction > 0 and spent > 1 - decay_fraction:
            return max(0.0, (1 - spent) / decay_fraction)
        return 1.0

    return factor


def budget_scheduler(
    optimizer, clock: TrainingClock, warmup_fraction: float, decay_fraction: float, max_steps: int = 0
) -> LambdaLR:
    return LambdaLR(optimizer, budget_lr_lambda(clock, warmup_fraction, decay_fraction, max_steps))


class TimeBudgetCallback(TrainerCallback, ExportableState):
    """Stops training at the budget and asks for evaluation (and a checkpoint) at `eval_fractions`.

    The final step is always evaluated and saved, so with `load_best_model_at_end` the decayed model takes
    part in the choice of the best one. `stop_reason` says why the run ended, for the run's summary.
    """

    def __init__(self, clock: TrainingClock, num_evaluations: int = 4):
        self.clock = clock
        self.marks = [i / num_evaluations for i in range(1, num_evaluations)] if num_evaluations > 1 else []
        self.stop_reason = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.clock.start()
        self.clock.sync()
        done = self.clock.fraction()
        self.marks = [mark for mark in self.marks if mark > done]

    def on_step_begin(self, args, state, control, **kwargs):
        self.clock.sync()  # the learning rate of this step reads the synced fraction

    def on_step_end(self, args, state, control, **kwargs):
        seconds = self.clock.sync()
        spent = max(seconds / self.clock.budget, state.global_step / args.max_steps if args.max_steps > 0 else 0.0)
        if seconds >= self.clock.budget:
            self.stop_reason = "time budget"
            control.should_training_stop = True
        elif self.marks and spent < 1 and spent >= self.marks[0]:
            self.marks = [mark for mark in self.marks if spent < mark]
        elif spent < 1:
            return control
        # a mark of the budget, or its end (by time or, first, by max_steps): evaluate and keep a checkpoint
        control.should_evaluate = args.eval_strategy != "no"
        control.should_save = args.save_strategy != "no"
        return control

    def state(self) -> dict:
        return {"args": {}, "attributes": {"elapsed": self.clock.elapsed()}}
