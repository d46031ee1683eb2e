"""`hf-custom-lm finetune-classifier --model_name_or_path LM_DIR --train_file data.csv`: add and train a
sequence-classification head; the result runs in `pipeline("text-classification")`.

Flags are the fields of `ClassifierArguments` and `ClassifierTrainingArguments` (every
`TrainingArguments` flag, `--resume`, early stopping); `--config run.yaml` supplies defaults.

    hf-custom-lm finetune-classifier --model_name_or_path outputs/demo/model --train_file reviews.csv \
        --output_dir outputs/sentiment --num_train_epochs 3
"""

import sys

from ..training.arguments import ClassifierArguments, ClassifierTrainingArguments
from .common import build_arguments_parser, run_finetune

ARGUMENT_TYPES = (ClassifierArguments, ClassifierTrainingArguments)
PROG = "hf-custom-lm finetune-classifier"


def build_parser():
    return build_arguments_parser(ARGUMENT_TYPES, PROG, __doc__.split("\n\n")[0])


def main(argv: list[str]) -> int:
    # datasets loads only for a run, not for --help
    from ..training.finetune_classifier import finetune_classifier

    return run_finetune(PROG, argv, ARGUMENT_TYPES, finetune_classifier, "classifier", __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
