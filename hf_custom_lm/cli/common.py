"""What every subcommand shares: parsing flags (and a YAML config) into argument dataclasses, logging, and the
one error path: bad input or a bad environment is reported in one line and exits 2, as argparse does."""

import argparse
import difflib
import json
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path

import yaml
from transformers import HfArgumentParser

# Bad input or a bad environment (a path missing or not writable, a full disk, a folder that is not a model):
# reported in one line, exit code 2. Other exceptions are bugs and keep their traceback.
USER_ERRORS = (ValueError, OSError)


def fail(prog: str, error: Exception | str) -> int:
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 2


def argument_names(*dataclass_types) -> set[str]:
    """Every field name the given argument dataclasses accept (the keys a YAML config may use)."""
    return {f.name for cls in dataclass_types for f in fields(cls) if f.init}


def load_yaml_config(path: str | Path, dataclass_types) -> dict:
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


def build_arguments_parser(dataclass_types, prog: str, description: str | None = None) -> HfArgumentParser:
    """The flags of the dataclasses, plus `--config FILE`."""
    parser = HfArgumentParser(dataclass_types, prog=prog, description=description)
    parser.add_argument("--config", help="YAML file of argument values; command-line flags override it.")
    return parser


def parse_with_config(argv: list[str], dataclass_types, prog: str, description: str | None = None) -> tuple:
    """Parse `argv` into the dataclasses; values of `--config FILE` become the defaults that flags override."""
    from .help_cache import parser_flags, unknown_flags_message

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    parser = build_arguments_parser(dataclass_types, prog, description)
    if known.config:
        parser.set_defaults(**load_yaml_config(known.config, dataclass_types))
    _, remaining = parser.parse_known_args(argv)  # unknown flags are named before any dataclass checks its values
    unknown = [arg.partition("=")[0] for arg in remaining if arg.startswith("--")]
    if unknown:
        raise ValueError(unknown_flags_message(unknown, parser_flags(parser), prog.removeprefix("hf-custom-lm ")))
    if remaining:
        raise ValueError(f"unexpected arguments {remaining}: every value follows its flag (`--name value`).")
    *parsed, _namespace = parser.parse_args_into_dataclasses(args=argv)
    return tuple(parsed)


def run_finetune(prog: str, argv: list[str], dataclass_types: tuple, finetune, saved: str, doc: str) -> int:
    """A fine-tuning subcommand (its help is `doc`'s first paragraph): parse `(args, training_args)`, check the
    model folder and `output_dir` before any data is read, run `finetune(args, training_args)`, print the
    validation metrics and where the `saved` model went."""
    from ..folders import check_model_folder
    from ..training import NonFiniteLossError, check_output_dir

    try:
        args, training_args = parse_with_config(argv, dataclass_types, prog=prog, description=doc.split("\n\n")[0])
    except USER_ERRORS as error:
        return fail(prog, error)
    configure_logging(logging.INFO if training_args.should_log else logging.WARNING)
    try:
        check_model_folder(args.model_name_or_path)  # a folder that is not a model, named before any data is read
        if training_args.should_save:
            check_output_dir(training_args.output_dir)
        metrics = finetune(args, training_args)
    except (*USER_ERRORS, NonFiniteLossError) as error:
        return fail(prog, error)
    if training_args.should_log:
        print(json.dumps({k: v for k, v in metrics.items() if k.startswith("eval_")}, indent=2))
        print(f"{saved} saved to {training_args.output_dir}")
    return 0


def configure_logging(level: int = logging.INFO) -> None:
    """Our messages at `level` on stderr (stdout carries results); transformers and datasets keep their own
    verbosity."""
    logger = logging.getLogger("hf_custom_lm")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(level)


def no_progress_bars_in_logs(stream=None, environ=os.environ) -> bool:
    """When `stream` (stderr) is not a terminal (a log file, a pipe), turn off the progress bars of
    huggingface_hub, transformers and datasets (tokenisation, saving): each redraw is a carriage return in the
    file. The Trainer's bars become plain lines (`training/progress.py`). Returns whether it did.

    The libraries read the environment variables when imported; those already imported are told directly. A
    value the user set in the environment is kept.
    """
    if (stream or sys.stderr).isatty():
        return False
    environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules and environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1":
        from transformers.utils.logging import disable_progress_bar

        disable_progress_bar()
    if "datasets" in sys.modules and environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1":
        from datasets.utils.tqdm import disable_progress_bars

        disable_progress_bars()
    return True
