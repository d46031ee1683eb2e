"""`hf-custom-lm finetune-token-classifier --model_name_or_path LM_DIR --train_file ner.txt`: add and train a
token-classification head on tagged sentences; the result runs in `pipeline("token-classification")`.

Flags are the fields of `TokenClassifierArguments` and `TokenClassifierTrainingArguments` (every
`TrainingArguments` flag, `--resume`, early stopping); `--config run.yaml` supplies defaults.

    hf-custom-lm finetune-token-classifier --model_name_or_path outputs/demo/model --train_file ner/train.txt \
        --validation_file ner/dev.txt --output_dir outputs/ner --num_train_epochs 3
"""

import json
import logging
import sys

from ..training.finetune_token_classifier import (
    TokenClassifierArguments,
    TokenClassifierTrainingArguments,
)
from .common import USER_ERRORS, configure_logging, fail, parse_with_config


def main(argv: list[str]) -> int:
    from ..folders import check_model_folder
    from ..training import NonFiniteLossError, check_output_dir
    from ..training.finetune_token_classifier import finetune_token_classifier

    prog = "hf-custom-lm finetune-token-classifier"
    try:
        args, training_args = parse_with_config(
            argv, (TokenClassifierArguments, TokenClassifierTrainingArguments), prog=prog,
            description=__doc__.split("\n\n")[0],
        )
    except USER_ERRORS as error:
        return fail(prog, error)
    configure_logging(logging.INFO if training_args.should_log else logging.WARNING)
    try:
        check_model_folder(args.model_name_or_path)  # a folder that is not a model, named before any data is read
        if training_args.should_save:
            check_output_dir(training_args.output_dir)
        metrics = finetune_token_classifier(args, training_args)
    except (*USER_ERRORS, NonFiniteLossError) as error:
        return fail(prog, error)
    if training_args.should_log:
        print(json.dumps({k: v for k, v in metrics.items() if k.startswith("eval_")}, indent=2))
        print(f"token classifier saved to {training_args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
