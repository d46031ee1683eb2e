"""`hf-custom-lm evaluate MODEL_DIR --file TEXT`: loss, perplexity and bits per byte of a saved model.

The file (.txt, .json/.jsonl, .csv, optionally compressed) is packed into blocks of `--block_size`
tokens, as in training, and every block is scored, each document on its own unless `--no_document_masking`.

    hf-custom-lm evaluate outputs/demo/model --file hf_custom_lm/corpus/validation.jsonl.gz
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from .common import USER_ERRORS, fail


@dataclass
class EvaluateArguments:
    file: str = field(metadata={"help": "Text to evaluate on: .txt, .json/.jsonl, .csv (.gz ok)."})
    block_size: int | None = field(default=None, metadata={"help": "Tokens per block; default min(512, model max)."})
    batch_size: int = field(default=8, metadata={"help": "Blocks per forward pass."})
    text_column_name: str = field(default="text", metadata={"help": "Column holding the text (json/csv)."})
    document_masking: bool = field(default=True, metadata={
        "help": "Score each document on its own, as training does by default; `--no_document_masking` lets a "
                "block's later documents see the earlier ones."})


def build_parser() -> HfArgumentParser:
    parser = HfArgumentParser(EvaluateArguments, prog="hf-custom-lm evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="A folder written by training (model + tokenizer).")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args, namespace = parser.parse_args_into_dataclasses(args=argv)
        if not Path(args.file).exists():
            raise FileNotFoundError(f"--file {args.file!r}: no such file; pass the text to evaluate on.")
        from ..training import evaluate_language_model

        metrics = evaluate_language_model(
            namespace.model_dir, args.file, block_size=args.block_size, batch_size=args.batch_size,
            text_column_name=args.text_column_name, document_masking=args.document_masking,
        )
    except USER_ERRORS as error:
        return fail("hf-custom-lm evaluate", error)
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
