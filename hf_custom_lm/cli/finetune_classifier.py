"""`hf-custom-lm finetune-classifier --model_name_or_path LM_DIR --train_file data.csv`: add and train a
sequence-classification head; the result runs in `pipeline("text-classification")`.

Flags are the fields of `ClassifierArguments` and `ClassifierTrainingArguments` (every
`TrainingArguments` flag, `--resume`, early stopping); `--config run.yaml` supplies defaults.

    hf-custom-lm finetune-classifier --model_name_or_path outputs/demo/model --train_file reviews.csv \
        --output_dir outputs/sentiment --num_train_epochs 3
"""

import sys

from ..training.arguments import ClassifierArguments, ClassifierTrainingArguments
from .common import run_finetune


def main(argv: list[str]) -> int:
    # datasets loads only for a run, not for --help
    from ..training.finetune_classifier import finetune_classifier

    arguments = (ClassifierArguments, ClassifierTrainingArguments)
    return run_finetune("hf-custom-lm finetune-classifier", argv, arguments, finetune_classifier, "classifier", __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
