"""`CustomLMTrainer`: the transformers `Trainer` with embeddings kept out of weight decay and language-model
metrics (perplexity, bits per byte) in every evaluation log."""

from torch import nn
from transformers import Trainer

from ..folders import inference_use_cache
from .budget import TimeBudgetCallback, budget_scheduler
from .callbacks import build_callbacks
from .metrics import language_model_metrics
from .optimizers import muon_with_adamw, separate_embedding_lr
from .progress import use_plain_progress


class CustomLMTrainer(Trainer):
    """`Trainer` with embeddings excluded from weight decay and perplexity / bits per byte in evaluation logs.

    Args:
        eval_bytes_per_token: UTF-8 bytes per token of `eval_dataset`'s text, for `eval_bits_per_byte`
            (`data.bytes_per_token`); evaluating another dataset needs another trainer or this set anew.
        language_model_metrics: add `eval_perplexity` (and bits per byte) next to `eval_loss`; off for
            classifiers, whose loss is not a per-token cross-entropy.
    """

    def __init__(self, *args, eval_bytes_per_token: float | None = None, language_model_metrics: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        use_plain_progress(self)  # plain lines instead of tqdm's bars when stderr is not a terminal
        self.eval_bytes_per_token = eval_bytes_per_token
        self.language_model_metrics = language_model_metrics

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """Trainer's rule (no decay for biases and norms) plus: no decay for embedding tables.

        Decay pulls the rows of rare tokens to zero between their few updates, and it would move rows
        frozen by `freeze_pretrained_embeddings`. A tied `lm_head` shares the token-embedding tensor.
        """
        embedding_parameters = {
            f"{module_name}.{name}" if module_name else name
            for module_name, module in model.named_modules()
            if isinstance(module, nn.Embedding)
            for name, _ in module.named_parameters(recurse=False)
        }
        return [name for name in super().get_decay_parameter_names(model) if name not in embedding_parameters]

    @property
    def time_budget(self) -> TimeBudgetCallback | None:
        return next((cb for cb in self.callback_handler.callbacks if isinstance(cb, TimeBudgetCallback)), None)

    def create_optimizer(self, model=None):
        """`--hidden_optimizer muon`: Muon for the decoder's weight matrices, AdamW for the rest; with
        `--embedding_lr_multiplier`, the token embeddings in a group of their own (`optimizers.py`)."""
        if self.optimizer is not None:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        multiplier = getattr(self.args, "embedding_lr_multiplier", None) or 1.0
        if getattr(self.args, "hidden_optimizer", "adamw") == "muon":
            self.optimizer = muon_with_adamw(model, self.args, self.get_decay_parameter_names(model), multiplier)
            return super().create_optimizer(model)
        optimizer = super().create_optimizer(model)
        if multiplier != 1.0:
            separate_embedding_lr(optimizer, model.get_input_embeddings().weight, multiplier)
        return optimizer

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        try:
            super()._load_optimizer_and_scheduler(checkpoint)
        except ValueError as error:
            if "parameter group" not in str(error):
                raise
            raise ValueError(
                f"The optimizer state in {checkpoint} has other parameter groups than this run's ({error}). Resume "
                "with the `--embedding_lr_multiplier` and `--hidden_optimizer` the run started with (a run started "
                "before `--embedding_lr_multiplier` existed: pass 1)."
            ) from error

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """With a time budget, the learning rate follows the fraction of the budget spent (`budget.py`)."""
        budget = self.time_budget
        if budget is not None and self.lr_scheduler is None:
            self.lr_scheduler = budget_scheduler(
                optimizer or self.optimizer, budget.clock, self.args.warmup_steps, self.args.lr_decay_fraction,
                max_steps=max(self.args.max_steps, 0),
            )
        return super().create_scheduler(num_training_steps, optimizer)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Checkpoints keep the config's own `use_cache` (the Trainer turns it off while training)."""
        with inference_use_cache(self.model):
            super()._save(output_dir, state_dict)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # `evaluate()` passes its metrics dict here before the callbacks and best-model tracking see it, so
        # keys added now reach TensorBoard, the log history, the console and the returned metrics.
        if self.language_model_metrics:
            for key in [k for k in logs if k.endswith("_loss") and k not in ("train_loss",)]:
                prefix = key[: -len("_loss")]
                logs.update(language_model_metrics(logs[key], self.eval_bytes_per_token, prefix=prefix))
        super().log(logs, start_time)


def build_trainer(model, training_args, tokenizer, train_dataset, eval_dataset, data_collator, checkpoint=None,
                  extra_callbacks=(), **kwargs) -> CustomLMTrainer:
    """A `CustomLMTrainer` with the run's callbacks (`build_callbacks`: non-finite loss, early stopping, time
    budget, their state restored from `checkpoint` when resuming); `kwargs` go to the trainer."""
    return CustomLMTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=data_collator,
        callbacks=build_callbacks(training_args, checkpoint) + list(extra_callbacks),
        **kwargs,
    )
