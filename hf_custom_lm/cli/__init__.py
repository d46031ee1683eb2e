"""`hf-custom-lm <subcommand> [args]`: one module per subcommand, each a thin parser over library code.

Subcommand modules are imported lazily so that `hf-custom-lm --help` stays fast and one
subcommand's optional dependencies never break another. The console command enters through the
top-level module `hf_custom_lm_cli`, which keeps torch out of the process until a job needs it.
"""

import importlib
import sys

# subcommand -> (module under hf_custom_lm.cli, one-line help)
SUBCOMMANDS = {
    "train-tokenizer": ("train_tokenizer", "train a byte-level BPE tokenizer on text files or a dataset"),
    "train": ("train", "train a language model with the Trainer (YAML config + flags)"),
    "evaluate": ("evaluate", "loss, perplexity and bits per byte of a saved model on a text file"),
    "generate": ("generate", "sample text from a saved model"),
    "finetune-classifier": ("finetune_classifier", "fine-tune a sequence-classification head on labelled text"),
    "finetune-qa": ("finetune_qa", "fine-tune an extractive question-answering head on SQuAD-format questions"),
    "finetune-token-classifier": ("finetune_token_classifier", "fine-tune a token-classification head on tagged text"),
    "export": ("export", "write a self-contained, Hub-ready folder (or a plain Llama one)"),
    "push": ("push", "upload an exported folder to the Hugging Face Hub"),
}


def _usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ["usage: hf-custom-lm [--version] <subcommand> [args]", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run `hf-custom-lm <subcommand> --help` for its options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from .. import __version__

        print(f"hf-custom-lm {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"hf-custom-lm: unknown subcommand {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    from .help_cache import answer

    status = answer(name, rest)  # --help and unknown flags, from the saved help: no transformers, no torch
    if status is not None:
        return status
    if "torch" not in sys.modules:  # OpenMP reads its settings once, when torch loads
        from .threads import choose_wait_policy

        choose_wait_policy(name)
    from .common import no_progress_bars_in_logs

    no_progress_bars_in_logs()
    module = importlib.import_module(f"hf_custom_lm.cli.{SUBCOMMANDS[name][0]}")
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
