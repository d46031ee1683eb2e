"""Train a byte-level BPE tokenizer; the same as `hf-custom-lm train-tokenizer` (see its --help).

    python scripts/train_tokenizer.py --files my_text.txt --vocab_size 8192 --output_dir my_tokenizer

The bundled tokenizer was trained with:

    python scripts/train_tokenizer.py --dataset_name json --data_files hf_custom_lm/corpus/train.jsonl.gz \\
        --vocab_size 8192 --output_dir hf_custom_lm/tokenizer
"""

import sys

from hf_custom_lm.cli.train_tokenizer import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
