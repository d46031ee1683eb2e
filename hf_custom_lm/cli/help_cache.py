"""Every subcommand's `--help`, and flags no parser would accept, answered without importing transformers.

The training subcommands' parsers are built from `TrainingArguments` subclasses, and importing
`transformers.training_args` loads torch (seconds); the others need `transformers` itself for
`HfArgumentParser` (about a second). So the help text and the flag names of every subcommand's parser are
saved in `cli/help/<command>.json` with the versions they were made with. `--help`, and a `--flag` that no
parser would accept, are answered from that file when the installed hf_custom_lm, transformers and Python
versions are the ones in it; otherwise, and for every other argument error, the live parser answers.
`tests/test_cli_help_cache.py` keeps the files equal to the live parsers; after changing a flag, rewrite
them with `make cli-help`.
"""

import difflib
import json
import sys
from importlib import metadata
from pathlib import Path

from . import SUBCOMMANDS  # each subcommand's module has `build_parser()`

HELP_DIR = Path(__file__).with_name("help")
# Terminal width the saved help is laid out for (argparse reads $COLUMNS).
COLUMNS = 100


def versions() -> dict[str, str]:
    """What the saved help depends on: our flags, transformers' `TrainingArguments`, and Python's argparse
    layout (versions read from package metadata: nothing is imported)."""
    return {"python": f"{sys.version_info.major}.{sys.version_info.minor}",
            **{name: metadata.version(name) for name in ("hf_custom_lm", "transformers")}}


def load(command: str) -> dict | None:
    """The saved help of `command`, or None when there is none for the installed versions."""
    path = HELP_DIR / f"{command}.json"
    if command not in SUBCOMMANDS or not path.is_file():
        return None
    try:
        installed = versions()
    except metadata.PackageNotFoundError:  # run from a source tree that pip never installed
        return None
    saved = json.loads(path.read_text())
    return saved if saved["versions"] == installed else None


def unknown_flags(argv: list[str], flags: list[str]) -> list[str]:
    """The `--name` arguments of `argv` that name no flag, not even as the unambiguous prefix argparse accepts."""
    unknown = []
    for arg in argv:
        if arg == "--":
            break
        name = arg.partition("=")[0]
        if name.startswith("--") and not any(flag.startswith(name) for flag in flags):
            unknown.append(name)
    return unknown


def unknown_flags_message(unknown: list[str], flags: list[str], command: str) -> str:
    """One line naming each unknown flag with the closest real ones."""
    spelled = [flag for flag in flags if "-" not in flag[2:]] or flags  # not also `--max-steps` for `--max_steps`
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, spelled, n=3)
        parts.append(f"{name}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    return (f"unknown flag{'s' if len(parts) > 1 else ''} {', '.join(parts)}; "
            f"`hf-custom-lm {command} --help` lists them all.")


def answer(command: str, argv: list[str]) -> int | None:
    """Answer `--help` or an unknown flag of `command` from its saved help: the exit status, or None when the
    live parser must answer (no saved help for these versions, or arguments the saved help cannot judge)."""
    saved = load(command)
    if saved is None:
        return None
    if "-h" in argv or "--help" in argv:
        print(saved["help"], end="")
        return 0
    unknown = unknown_flags(argv, saved["flags"])
    if unknown:
        print(f"hf-custom-lm {command}: error: {unknown_flags_message(unknown, saved['flags'], command)}",
              file=sys.stderr)
        return 2
    return None


def live(command: str) -> dict:
    """The help text and flag names of `command`'s parser as built now (imports torch)."""
    import importlib
    import os

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(COLUMNS)
    try:
        parser = importlib.import_module(f"hf_custom_lm.cli.{SUBCOMMANDS[command][0]}").build_parser()
        text = parser.format_help()
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return {"versions": versions(), "help": text, "flags": parser_flags(parser)}


def parser_flags(parser) -> list[str]:
    """Every `--name` the parser accepts (argparse keeps them only in its actions)."""
    return sorted(option for action in parser._actions for option in action.option_strings if option.startswith("--"))


def write() -> None:
    HELP_DIR.mkdir(exist_ok=True)
    for command in SUBCOMMANDS:
        (HELP_DIR / f"{command}.json").write_text(json.dumps(live(command), indent=1) + "\n")
        print(f"wrote {HELP_DIR / command}.json")


if __name__ == "__main__":
    write()
