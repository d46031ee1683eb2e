"""The `hf-custom-lm` console command: `hf_custom_lm.cli.main` behind an import that does not load torch.

`import hf_custom_lm` registers the model with transformers' Auto classes, which loads torch and
transformers (seconds). Started from here, the package defers that registration to the first model a
job loads (`hf_custom_lm.folders.load_model`), so `--help`, `--version` and argument errors answer without
torch, and each job's OpenMP settings are chosen before torch starts (`hf_custom_lm/cli/threads.py`).
"""

import sys

# Read by `hf_custom_lm/__init__.py` when the package is imported.
DEFER_AUTO_REGISTRATION = False


def main(argv: list[str] | None = None) -> int:
    global DEFER_AUTO_REGISTRATION
    DEFER_AUTO_REGISTRATION = "hf_custom_lm" not in sys.modules  # imported already: registered already
    from hf_custom_lm.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
