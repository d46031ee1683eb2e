"""`hf-custom-lm export RUN_DIR OUT_DIR [--format llama|gguf]`: a self-contained, Hub-ready folder, or one GGUF file."""

from dataclasses import dataclass, field

from transformers import HfArgumentParser

from ..hub import FORMATS, export_run
from ..hub.gguf import GGUF_TYPES
from .common import USER_ERRORS, fail


@dataclass
class ExportArguments:
    format: str = field(
        default="custom_lm",
        metadata={"choices": list(FORMATS), "help": "custom_lm: the model's own code, loaded with "
                  "trust_remote_code=True; llama: a plain LlamaForCausalLM (Llama-compatible settings only); gguf: one "
                  "file for llama.cpp / Ollama (Llama-compatible settings only; OUT_DIR may name the .gguf file)."},
    )
    gguf_type: str | None = field(
        default=None,
        metadata={"choices": list(GGUF_TYPES), "help": "Weights of a --format gguf file: f32, f16 (default) "
                  "or q8_0 (8-bit blocks, about half the size of f16)."},
    )
    repo_id: str | None = field(default=None, metadata={"help": "Hub id the card's usage code names (user/name)."})
    dataset_description: str | None = field(default=None, metadata={"help": "The card's training-data paragraph."})
    datasets: list[str] = field(default_factory=list, metadata={"help": "Hub dataset ids trained on (card metadata)."})
    license: str = field(default="apache-2.0", metadata={"help": "License id for the card metadata."})
    overwrite: bool = field(default=False, metadata={"help": "Replace the files of an earlier export in OUT_DIR."})


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(ExportArguments, prog="hf-custom-lm export", description=__doc__)
    parser.add_argument("run_dir", help="a training output folder or a saved model folder")
    parser.add_argument("out_dir", help="the folder to write")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args, paths = parser.parse_args_into_dataclasses(argv)
        out_dir = export_run(
            paths.run_dir, paths.out_dir, format=args.format, repo_id=args.repo_id,
            dataset_description=args.dataset_description, datasets=args.datasets or None,
            license=args.license, overwrite=args.overwrite, gguf_type=args.gguf_type,
        )
    except (*USER_ERRORS, TypeError) as error:
        return fail("hf-custom-lm export", error)
    print(f"Exported {paths.run_dir} to {out_dir} ({args.format}).")
    return 0
