"""`hf-custom-lm train [--config run.yaml] [--flag value ...]`: train a language model with the Trainer.

Flags are the fields of `ModelArguments`, `DataArguments` and `LMTrainingArguments` (every
`TrainingArguments` flag, plus `--resume` and the early-stopping flags). A YAML config holds the same
names; flags given on the command line override it. Without a data flag the bundled corpus is used.

    hf-custom-lm train --config configs/demo.yaml --max_steps 200 --output_dir outputs/try
    torchrun --nproc_per_node 2 scripts/train.py --config configs/small.yaml
"""

import argparse
import difflib
import logging
import sys
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from ..arguments import DataArguments, LMTrainingArguments, ModelArguments, argument_names

ARGUMENT_TYPES = (ModelArguments, DataArguments, LMTrainingArguments)


def load_yaml_config(path: str | Path, dataclass_types=ARGUMENT_TYPES) -> dict:
    """The mapping in a YAML run config, with every key checked against the argument names."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {str(path)!r} does not exist.")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"Config file {str(path)!r} must hold a mapping of argument names to values.")
    valid = argument_names(*dataclass_types)
    for key in values:
        if key not in valid:
            close = difflib.get_close_matches(key, sorted(valid), n=3)
            raise ValueError(
                f"Unknown key {key!r} in config file {str(path)!r}."
                + (f" Did you mean {' or '.join(close)}?" if close else "")
                + " Keys are the `hf-custom-lm train --help` flag names without the dashes."
            )
    return values


def parse_with_config(argv: list[str], dataclass_types, prog: str, description: str | None = None) -> tuple:
    """Parse `argv` into the dataclasses; values of `--config FILE` become the defaults that flags override."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    parser = HfArgumentParser(dataclass_types, prog=prog, description=description)
    parser.add_argument("--config", help="YAML file of argument values; command-line flags override it.")
    if known.config:
        parser.set_defaults(**load_yaml_config(known.config, dataclass_types))
    *parsed, _namespace = parser.parse_args_into_dataclasses(args=argv)
    return tuple(parsed)


def parse_train_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, LMTrainingArguments]:
    return parse_with_config(argv, ARGUMENT_TYPES, prog="hf-custom-lm train", description=__doc__.split("\n\n")[0])


def configure_logging(level: int = logging.INFO) -> None:
    """Our messages at `level` on stderr (stdout carries results); transformers and datasets keep their own
    verbosity."""
    logger = logging.getLogger("hf_custom_lm")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(level)


# Bad input or a bad environment (a path missing or not writable, a full disk, a folder that is not a model):
# reported in one line, exit code 2. Other exceptions are bugs and keep their traceback.
USER_ERRORS = (ValueError, OSError)


def fail(prog: str, error: Exception | str) -> int:
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    from ..callbacks import NonFiniteLossError
    from ..training import train_language_model

    try:
        model_args, data_args, training_args = parse_train_args(argv)
    except USER_ERRORS as error:
        return fail("hf-custom-lm train", error)
    configure_logging(logging.INFO if training_args.should_log else logging.WARNING)
    try:
        metrics = train_language_model(model_args, data_args, training_args)
    except (*USER_ERRORS, NonFiniteLossError) as error:
        return fail("hf-custom-lm train", error)
    if training_args.should_log:
        print(
            f"validation loss {metrics['eval_loss']:.4f}, perplexity {metrics['eval_perplexity']:.2f}, "
            f"bits per byte {metrics['eval_bits_per_byte']:.4f}; model saved to {training_args.output_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
