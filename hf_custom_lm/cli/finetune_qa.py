"""`hf-custom-lm finetune-qa --model_name_or_path LM_DIR --train_file train.json`: add and train an extractive
question-answering head on SQuAD-format questions; the result loads with `AutoModelForQuestionAnswering`.

Flags are the fields of `QuestionAnsweringArguments` and `QuestionAnsweringTrainingArguments` (every
`TrainingArguments` flag, `--resume`, early stopping); `--config run.yaml` supplies defaults.

    hf-custom-lm finetune-qa --model_name_or_path outputs/demo/model --train_file squad/train.json \
        --validation_file squad/dev.json --output_dir outputs/qa --num_train_epochs 2 \
        --max_length 256 --doc_stride 64

A context longer than `--max_length` tokens is read in windows that share `--doc_stride` tokens.
"""

import sys

from ..training import finetune_qa as qa
from .common import build_arguments_parser, run_finetune

ARGUMENT_TYPES = (qa.QuestionAnsweringArguments, qa.QuestionAnsweringTrainingArguments)
PROG = "hf-custom-lm finetune-qa"


def build_parser():
    return build_arguments_parser(ARGUMENT_TYPES, PROG, __doc__.split("\n\n")[0])


def main(argv: list[str]) -> int:
    return run_finetune(PROG, argv, ARGUMENT_TYPES, qa.finetune_qa, "question-answering model", __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
