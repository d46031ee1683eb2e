"""`--bf16` unset on a CPU with native bf16 (AVX512-BF16 or AMX): the run takes the precision whose training step
is the faster for its model, timed on this machine before training.

Native bf16 does not make every step faster on a CPU: under autocast each linear layer casts its weights and
inputs to bf16 and its output back, and for a narrow model that costs more than the faster matmul saves. On a
Xeon with AMX, one thread, batch 8 x 128, vocabulary 8192, sampled head, a bf16 step took 1.3 to 2.1 times
the fp32 one for models 64 to 128 wide, 0.88 times at 192 wide and 0.74 times at 256 (benchmarks/RESULTS.md). A
model sized for a time budget has this decided per candidate shape (`sizing.size_for_budget`); other runs call
`choose_precision` here, and a resumed run takes the choice saved in its run folder (`precision.json`), so it
does not change precision halfway.
"""

import json
import logging
import time
from pathlib import Path

import torch

from .sizing import time_training_step

logger = logging.getLogger(__name__)


PRECISION_FILE = "precision.json"


def choose_precision(config, training_args, block_size: int, sampled_softmax: int = 0, resuming: bool = False) -> None:
    """Time `config`'s training step in fp32 and under bf16 autocast and set `training_args` to the faster, where
    `training_args.bf16_from_probe` says bf16 was left unset on a native-bf16 CPU; else leave it. In a
    multi-process run every process takes the main process's choice; a resumed run takes the saved one."""
    if not getattr(training_args, "bf16_from_probe", False):
        return
    saved = Path(training_args.output_dir) / PRECISION_FILE
    if resuming and saved.is_file():
        training_args.set_bf16(json.loads(saved.read_text())["bf16"])
        return
    clock = time.process_time if training_args.train_time_clock == "cpu" else time.monotonic
    batch_size = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    timed = {on: time_training_step(config, batch_size, block_size, clock, sampled_softmax, "cpu", on,
                                    training_args.hidden_optimizer or "adamw") for on in (False, True)}
    bf16 = min(timed, key=timed.get)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        shared = [bf16]
        torch.distributed.broadcast_object_list(shared, src=0)
        bf16 = shared[0]
    training_args.set_bf16(bf16)
    if training_args.should_save:
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"bf16": bf16, "seconds_per_step": {"bf16": timed[True], "fp32": timed[False]}}))
    logger.info(f"Precision: {'bf16 autocast' if bf16 else 'fp32'}; a training step of this model took "
                f"{timed[True]:.3g} s in bf16 and {timed[False]:.3g} s in fp32 on this CPU (`--bf16 true` or "
                "`--bf16 false` to choose).")
