"""`hf-custom-lm finetune-classifier --model_name_or_path LM_DIR --train_file data.csv`: add and train a
sequence-classification head; the result runs in `pipeline("text-classification")`.

Flags are the fields of `ClassifierArguments` and `ClassifierTrainingArguments` (every
`TrainingArguments` flag, `--resume`, early stopping); `--config run.yaml` supplies defaults.

    hf-custom-lm finetune-classifier --model_name_or_path outputs/demo/model --train_file reviews.csv \
        --output_dir outputs/sentiment --num_train_epochs 3
"""

import json
import logging
import sys

from ..training.arguments import ClassifierArguments, ClassifierTrainingArguments
from .common import USER_ERRORS, configure_logging, fail, parse_with_config


def main(argv: list[str]) -> int:
    from ..folders import check_model_folder
    from ..training import NonFiniteLossError, check_output_dir
    from ..training.finetune_classifier import finetune_classifier

    prog = "hf-custom-lm finetune-classifier"
    try:
        args, training_args = parse_with_config(
            argv, (ClassifierArguments, ClassifierTrainingArguments), prog=prog, description=__doc__.split("\n\n")[0]
        )
    except USER_ERRORS as error:
        return fail(prog, error)
    configure_logging(logging.INFO if training_args.should_log else logging.WARNING)
    try:
        check_model_folder(args.model_name_or_path)  # a folder that is not a model, named before any data is read
        if training_args.should_save:
            check_output_dir(training_args.output_dir)
        metrics = finetune_classifier(args, training_args)
    except (*USER_ERRORS, NonFiniteLossError) as error:
        return fail(prog, error)
    if training_args.should_log:
        print(json.dumps({k: v for k, v in metrics.items() if k.startswith("eval_")}, indent=2))
        print(f"classifier saved to {training_args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
