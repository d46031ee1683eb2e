"""Builders the export, card, push, remote-code and Llama tests share (a helper module: pytest collects no tests here).

A tiny model sized to the session's tokenizer (the `tokenizer` fixture of conftest) and a short real
`Trainer` run that leaves a genuine output folder: checkpoints, `trainer_state.json`, `all_results.json`
and the final model + tokenizer at its top.
"""

from pathlib import Path

import torch
from datasets import Dataset
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

from hf_custom_lm import CustomLMForCausalLM

from .conftest import SAMPLE_TEXT, tiny_config


def tiny_model(tokenizer, **overrides) -> CustomLMForCausalLM:
    torch.manual_seed(0)
    return CustomLMForCausalLM(tiny_config(**{"vocab_size": len(tokenizer), **overrides})).eval()


def _blocks(tokenizer, lines, block_size=16) -> Dataset:
    ids = [i for line in lines for i in tokenizer(line)["input_ids"] + [tokenizer.eos_token_id]]
    chunks = [ids[i : i + block_size] for i in range(0, len(ids) - block_size + 1, block_size)]
    return Dataset.from_dict({"input_ids": chunks, "labels": chunks})


def train_tiny_run(output_dir, tokenizer, learning_rate=0.1, max_steps=20, threshold=0.5) -> Trainer:
    """A real Trainer run with eval/save every 2 steps, best-model reload and early stopping (patience 1).

    Early stopping asks each evaluation to improve the best eval loss by more than `threshold` nats, so
    the run ends before `max_steps` once the loss flattens; it then saves model, tokenizer, state and
    metrics the way training scripts do, with `training_args.json` for the card's hyper-parameter table.
    """
    model = tiny_model(tokenizer).train()
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=learning_rate,
        logging_steps=1, eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
        load_best_model_at_end=True, metric_for_best_model="eval_loss", report_to=[], seed=0, use_cpu=True,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=_blocks(tokenizer, SAMPLE_TEXT[:24]),
        eval_dataset=_blocks(tokenizer, SAMPLE_TEXT[24:]), processing_class=tokenizer,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=1, early_stopping_threshold=threshold)],
    )
    train_metrics = trainer.train().metrics
    trainer.save_model()
    trainer.save_state()
    eval_metrics = trainer.evaluate()
    trainer.save_metrics("all", {**train_metrics, **eval_metrics})
    (Path(output_dir) / "training_args.json").write_text(args.to_json_string())
    return trainer
