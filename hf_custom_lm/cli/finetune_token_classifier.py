"""`hf-custom-lm finetune-token-classifier --model_name_or_path LM_DIR --train_file ner.txt`: add and train a
token-classification head on tagged sentences; the result runs in `pipeline("token-classification")`.

Flags are the fields of `TokenClassifierArguments` and `TokenClassifierTrainingArguments` (every
`TrainingArguments` flag, `--resume`, early stopping); `--config run.yaml` supplies defaults.

    hf-custom-lm finetune-token-classifier --model_name_or_path outputs/demo/model --train_file ner/train.txt \
        --validation_file ner/dev.txt --output_dir outputs/ner --num_train_epochs 3
"""

import sys

from ..training import finetune_token_classifier as tagging
from .common import build_arguments_parser, run_finetune

ARGUMENT_TYPES = (tagging.TokenClassifierArguments, tagging.TokenClassifierTrainingArguments)
PROG = "hf-custom-lm finetune-token-classifier"


def build_parser():
    return build_arguments_parser(ARGUMENT_TYPES, PROG, __doc__.split("\n\n")[0])


def main(argv: list[str]) -> int:
    return run_finetune(PROG, argv, ARGUMENT_TYPES, tagging.finetune_token_classifier, "token classifier", __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
