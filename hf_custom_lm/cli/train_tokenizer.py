"""`hf-custom-lm train-tokenizer`: train a byte-level BPE tokenizer on text files or a dataset.

    hf-custom-lm train-tokenizer --files book1.txt book2.txt --vocab_size 8192 --output_dir my_tokenizer
    hf-custom-lm train-tokenizer --dataset_name json --data_files hf_custom_lm/corpus/train.jsonl.gz \\
        --vocab_size 8192 --output_dir hf_custom_lm/tokenizer      # rebuilds the bundled tokenizer

The folder it writes loads with `AutoTokenizer.from_pretrained(output_dir)`.
"""

import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from .common import USER_ERRORS, fail

PROG = "hf-custom-lm train-tokenizer"


@dataclass
class TrainTokenizerArguments:
    output_dir: str = field(metadata={"help": "Folder the tokenizer is saved in."})
    files: list[str] | None = field(default=None, metadata={"help": "UTF-8 text files to train on."})
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Instead of --files: a `datasets.load_dataset` name or path, e.g. `json` with --data_files."},
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    data_files: list[str] | None = field(default=None, metadata={"help": "Files for --dataset_name json/text/csv."})
    dataset_split: str = field(default="train", metadata={"help": "The split of the dataset to train on."})
    text_column: str = field(default="text", metadata={"help": "The dataset column holding the text."})
    vocab_size: int = field(default=8192, metadata={"help": "Vocabulary size, 256 bytes and special tokens included."})
    min_frequency: int = field(default=2, metadata={"help": "Pairs seen fewer times are never merged."})
    normalization: str | None = field(
        default=None, metadata={"help": "Unicode normalization; default none (lossless).", "choices": ["NFC", "NFKC"]}
    )
    model_max_length: int = field(default=1024, metadata={"help": "Longest sequence kept when truncating."})
    additional_special_tokens: list[str] | None = field(
        default=None, metadata={"help": "Special tokens after <|endoftext|> (id 0) and <|pad|> (id 1)."}
    )


def build_parser() -> HfArgumentParser:
    return HfArgumentParser(TrainTokenizerArguments, prog=PROG, description=__doc__.split("\n\n")[0])


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        (args,) = parser.parse_args_into_dataclasses(args=argv)
        if (args.files is None) == (args.dataset_name is None):
            raise ValueError("pass exactly one of --files (UTF-8 text files) or --dataset_name.")
        from ..training.tokenization import train_tokenizer  # after parsing: --help loads no torch
        dataset = None
        if args.dataset_name is not None:
            from ..training.data import read_dataset

            dataset = read_dataset(
                args.data_files or [args.dataset_name], args.dataset_name, args.dataset_config_name,
                data_files=args.data_files, split=args.dataset_split,
            )
        tokenizer = train_tokenizer(
            files=args.files,
            dataset=dataset,
            vocab_size=args.vocab_size,
            min_frequency=args.min_frequency,
            additional_special_tokens=args.additional_special_tokens or (),
            normalization=args.normalization,
            model_max_length=args.model_max_length,
            text_column=args.text_column,
            output_dir=args.output_dir,
        )
    except (*USER_ERRORS, TypeError) as error:  # OSError: also an output_dir that cannot be written
        return fail(PROG, error)
    print(f"Saved a byte-level BPE tokenizer with {len(tokenizer)} tokens to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
