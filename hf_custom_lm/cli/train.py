"""`hf-custom-lm train [--config run.yaml] [--flag value ...]`: train a language model with the Trainer.

Flags are the fields of `ModelArguments`, `DataArguments` and `LMTrainingArguments` (every
`TrainingArguments` flag, plus `--resume` and the early-stopping flags). A YAML config holds the same
names; flags given on the command line override it. Without a data flag the bundled corpus is used.

    hf-custom-lm train --config configs/demo.yaml --max_steps 200 --output_dir outputs/try
    torchrun --nproc_per_node 2 scripts/train.py --config configs/small.yaml
"""

import logging
import shlex
import sys

from ..training.arguments import DataArguments, LMTrainingArguments, ModelArguments
from .common import USER_ERRORS, build_arguments_parser, configure_logging, fail, parse_with_config

ARGUMENT_TYPES = (ModelArguments, DataArguments, LMTrainingArguments)
PROG, DESCRIPTION = "hf-custom-lm train", __doc__.split("\n\n")[0]


def build_parser():
    return build_arguments_parser(ARGUMENT_TYPES, PROG, DESCRIPTION)


def parse_train_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, LMTrainingArguments]:
    return parse_with_config(argv, ARGUMENT_TYPES, prog=PROG, description=DESCRIPTION)


def leave_process_group() -> None:
    """Under torchrun or accelerate launch, leave the process group before the interpreter exits: left to the
    exit, gloo's threads can abort a process whose work is done ("terminate called without an active
    exception", then SIGABRT and a failed launch)."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def main(argv: list[str]) -> int:
    from ..training import NonFiniteLossError, train_language_model

    try:
        model_args, data_args, training_args = parse_train_args(argv)
    except USER_ERRORS as error:
        return fail("hf-custom-lm train", error)
    configure_logging(logging.INFO if training_args.should_log else logging.WARNING)
    try:
        metrics = train_language_model(model_args, data_args, training_args)
    except (*USER_ERRORS, NonFiniteLossError) as error:
        return fail("hf-custom-lm train", error)
    except KeyboardInterrupt:
        if training_args.should_log:
            print(interrupted_message(training_args.output_dir, argv), file=sys.stderr)
        return 130
    finally:
        leave_process_group()
    if training_args.should_log:
        print(
            f"validation loss {metrics['eval_loss']:.4f}, perplexity {metrics['eval_perplexity']:.2f}, "
            f"bits per byte {metrics['eval_bits_per_byte']:.4f}; model saved to {training_args.output_dir}"
        )
    return 0


def interrupted_message(output_dir: str, argv: list[str]) -> str:
    """One line for Ctrl-C: the last complete checkpoint and the command that continues from it."""
    from ..training.checkpoints import last_complete_checkpoint

    checkpoint = last_complete_checkpoint(output_dir)
    if checkpoint is None:
        return f"Interrupted before the first complete checkpoint in {output_dir}; nothing to resume from."
    command = shlex.join(["hf-custom-lm", "train", *[arg for arg in argv if arg != "--resume"], "--resume"])
    return f"Interrupted. Last complete checkpoint: {checkpoint}. Continue with: {command}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
