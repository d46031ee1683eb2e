"""Run arguments: `ModelArguments` and `DataArguments` with the names of transformers' `run_clm.py`, and
`LMTrainingArguments`, the `TrainingArguments` with defaults for training a language model from scratch
(periodic evaluation, early stopping, best model loaded at the end, cosine schedule, TensorBoard).

`HfArgumentParser` turns these dataclasses into the `hf-custom-lm train` flags; YAML configs use the same names.
"""

import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments


def fast_bf16_available() -> bool:
    """True where bf16 matmuls run natively: a bf16-capable GPU, or a CPU with AVX512-BF16 or AMX.

    On CPUs without them bf16 is emulated and slower than fp32, so autocast would only cost time.
    """
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    if torch.accelerator.is_available():
        return False  # other accelerators: opt in with --bf16
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def check_validation_split_percentage(value: float) -> None:
    if not 0 < value < 100:
        raise ValueError(
            f"`validation_split_percentage` must be between 0 and 100 (exclusive), got {value}: the percent of "
            "the training data held out for validation when no validation file is given."
        )


# With a time budget, evaluations and saves come from the budget's clock: a step count never reached.
BUDGET_NEVER_STEPS = 10**9


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A trained model folder to continue from. Leave unset to train from scratch."},
    )
    config_name: str | None = field(
        default=None,
        metadata={"help": "A preset (tiny, small, base, classic), `auto` (sized for `--max_train_time` on this machine) "
                  "or a config.json / folder, to train from scratch. Default: auto with --max_train_time, else tiny."},
    )
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Config fields to change, e.g. `num_hidden_layers=2,hidden_size=128`."},
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "A tokenizer folder; default: the tokenizer bundled with hf_custom_lm."},
    )
    embedding_vectors_file: str | None = field(
        default=None,
        metadata={"help": "GloVe / word2vec text file whose vectors initialise the embeddings of whole-word tokens."},
    )
    freeze_pretrained_embeddings: bool = field(
        default=False,
        metadata={"help": "Keep the embedding rows set from `embedding_vectors_file` fixed during training."},
    )

    def __post_init__(self):
        if self.freeze_pretrained_embeddings and not self.embedding_vectors_file:
            raise ValueError(
                "`freeze_pretrained_embeddings` needs `embedding_vectors_file`: pass a word-vector file or drop "
                "the flag."
            )


@dataclass
class DataArguments:
    dataset_name: str | None = field(
        default=None, metadata={"help": "A dataset name or local dataset folder for `datasets.load_dataset`."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    train_file: str | None = field(default=None, metadata={"help": "Training text: .txt, .json/.jsonl, .csv (.gz ok)."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation text, same formats."})
    text_column_name: str = field(default="text", metadata={"help": "Column holding the text."})
    block_size: int = field(default=128, metadata={"help": "Tokens per training sequence after packing."})
    document_masking: bool = field(
        default=True,
        metadata={"help": "Within a packed block, attend only inside each document: positions restart at every "
                  "document, as at generation. `--no_document_masking` lets blocks attend across documents, as "
                  "run_clm does."},
    )
    shift_block_boundaries: bool = field(
        default=True,
        metadata={"help": "From the second epoch on, cut the training text into blocks at a new offset each epoch "
                  "(drawn from the seed), so text seen again comes in other blocks, behind other context. "
                  "`--no_shift_block_boundaries`: the same blocks every epoch, as run_clm does."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on the first this many packed blocks only (quick runs, debugging)."}
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Evaluate periodically on at most this many packed blocks, evenly spaced over the validation "
                          "text (faster; a stream gives its first ones)."},
    )
    streaming: bool = field(
        default=False, metadata={"help": "Stream the dataset instead of loading it (needs max_steps)."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenisation."})
    validation_split_percentage: int = field(
        default=5, metadata={"help": "Percent of the training data held out when there is no validation split."}
    )
    cache_dir: str | None = field(
        default=None, metadata={"help": "Where `datasets` caches loaded and tokenised data (default: its own cache)."}
    )

    def __post_init__(self):
        if self.block_size < 2:
            raise ValueError(
                f"`block_size` must be at least 2 (one input and one target token), got {self.block_size}."
            )
        check_validation_split_percentage(self.validation_split_percentage)


# The peak learning rate of training from scratch when none is given and the model is not sized for a budget.
DEFAULT_LEARNING_RATE = 1e-3


def _default(name: str, value, **kwargs):
    """Re-declare a `TrainingArguments` field with another default, keeping its help text."""
    metadata = TrainingArguments.__dataclass_fields__[name].metadata
    if isinstance(value, list):
        return field(default_factory=lambda: list(value), metadata=metadata, **kwargs)
    return field(default=value, metadata=metadata, **kwargs)


@dataclass
class LMTrainingArguments(TrainingArguments):
    """`TrainingArguments` with from-scratch language-model defaults, early stopping and `--resume`."""

    output_dir: str | None = _default("output_dir", "outputs/custom-lm")
    learning_rate: float | None = field(
        default=None,
        metadata={"help": f"The peak learning rate. Unset: {DEFAULT_LEARNING_RATE:g}, or with `--config_name auto` the "
                  "rate measured best for the chosen shape (sizing.json)."},
    )
    lr_scheduler_type: str = _default("lr_scheduler_type", "cosine")
    warmup_steps: float = _default("warmup_steps", 0.05)
    weight_decay: float = _default("weight_decay", 0.1)
    eval_strategy: str = _default("eval_strategy", "steps")
    eval_steps: float | None = _default("eval_steps", 100)
    save_strategy: str = _default("save_strategy", "steps")
    save_steps: float = _default("save_steps", 100)
    save_total_limit: int | None = _default("save_total_limit", 2)
    logging_steps: float = _default("logging_steps", 10)
    # The non-finite-loss guard reads the logged loss, which the filter would otherwise clean of NaN/inf.
    logging_nan_inf_filter: bool = _default("logging_nan_inf_filter", False)
    load_best_model_at_end: bool = _default("load_best_model_at_end", True)
    metric_for_best_model: str | None = _default("metric_for_best_model", "eval_loss")
    greater_is_better: bool | None = _default("greater_is_better", False)
    report_to: None | str | list[str] = _default("report_to", ["tensorboard"])
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bf16 autocast. Unset: on where bf16 is native (bf16 GPU, AVX512-BF16/AMX CPU), else off; on "
                    "such a CPU `train` takes the precision whose step it times faster (a narrow model's is fp32).",
            "nargs": "?",
            "const": True,
        },
    )
    early_stopping_patience: int = field(
        default=3,
        metadata={"help": "Stop after this many evaluations without improvement of `metric_for_best_model`; 0: never."},
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "How much `metric_for_best_model` must improve to count as an improvement."}
    )
    resume: bool = field(
        default=False, metadata={"help": "Continue from the newest complete checkpoint in `output_dir`."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start a new run in an `output_dir` that holds an earlier run's checkpoints (deleted) or "
                  "files no run wrote; without it such a folder is refused."},
    )
    max_train_time: str | None = field(
        default=None,
        metadata={"help": "Train for this long (`300`, `10m`, `2h`): the learning rate warms up, holds and decays to "
                  "zero over the budget; ends with a full evaluation. With `max_steps`, whichever comes first."},
    )
    train_time_clock: str = field(
        default="wall",
        metadata={"help": "What `max_train_time` counts: `wall` time, or this process's `cpu` time (for comparing "
                  "runs on a shared machine).", "choices": ["wall", "cpu"]},
    )
    hidden_optimizer: str | None = field(
        default=None,
        metadata={"help": "`muon`: torch's Muon for the decoder's weight matrices and AdamW for embeddings, norms "
                  "and head, one learning rate for both; `adamw`: the Trainer's `--optim` for everything. Unset: "
                  "`muon` for a model trained from scratch with the default `--optim` (not under FSDP or "
                  "DeepSpeed), the checkpoint's when resuming, else `adamw`.",
                  "choices": ["adamw", "muon"]},
    )
    lr_decay_fraction: float = field(
        default=0.3,
        metadata={"help": "With `max_train_time`: the final fraction of the budget over which the learning rate "
                  "decays linearly to zero."},
    )
    embedding_lr_multiplier: float | None = field(
        default=None,
        metadata={"help": "The token embeddings' learning rate (the tied output head's too) as a multiple of "
                  "`learning_rate`: a rare token's row moves only when the token is in the batch. Unset: 3 for a "
                  "model trained from scratch with `--hidden_optimizer adamw`, else 1 (Muon, or training "
                  "continued from `model_name_or_path`)."},
    )
    sampled_softmax: int | None = field(
        default=None,
        metadata={"help": "Train the output head on a sampled softmax of the step's targets and this many tokens "
                  "drawn by frequency, until the last `lr_decay_fraction` of training, then on the full softmax: "
                  "cheaper steps, and a training loss that reads lower meanwhile. 0: the full softmax throughout. "
                  "Unset: 1024 with `max_train_time` and a vocabulary of 8192 tokens or more, else 0."},
    )

    def __post_init__(self):
        # Unset, `--config_name auto` may replace the default with its shape's rate (`sizing.size_model`).
        self.learning_rate_from_sizing = self.learning_rate is None
        if self.learning_rate is None:
            self.learning_rate = DEFAULT_LEARNING_RATE
        # Unset on a CPU with native bf16, the run times its step in both precisions and takes the faster
        # (`precision.choose_precision`, or for a model sized for the budget `sizing.size_model`).
        self.bf16_from_probe = (self.bf16 is None and not self.fp16 and not torch.accelerator.is_available()
                                and "ACCELERATE_MIXED_PRECISION" not in os.environ and fast_bf16_available())
        if self.bf16 is None:
            self.bf16 = fast_bf16_available()
        if not torch.accelerator.is_available():
            # On a machine without an accelerator, transformers runs torchrun/accelerate processes as DDP
            # (gloo) and autocasts to bf16 only when told the run is on CPU.
            self.use_cpu = True
            self.dataloader_pin_memory = False  # pinning needs an accelerator; without one it only warns
        if self.max_train_time is not None:
            self._use_time_budget()
        if self.early_stopping_patience < 0:
            raise ValueError(f"`early_stopping_patience` must be >= 0, got {self.early_stopping_patience}.")
        if self.embedding_lr_multiplier is not None and not self.embedding_lr_multiplier > 0:
            raise ValueError(f"`embedding_lr_multiplier` must be > 0 (1: the embeddings take `learning_rate`), got "
                             f"{self.embedding_lr_multiplier}.")
        if self.sampled_softmax is not None and self.sampled_softmax < 0:
            raise ValueError(f"`sampled_softmax` must be >= 0 draws a step (0: the full softmax), got "
                             f"{self.sampled_softmax}.")
        if self.early_stopping_patience and self.eval_strategy in ("no", None):
            raise ValueError(
                "Early stopping needs periodic evaluation: set `eval_strategy` to `steps` (or `epoch`), "
                "or set `early_stopping_patience` to 0."
            )
        super().__post_init__()

    def set_bf16(self, enabled: bool) -> None:
        """Turn bf16 autocast on or off after the arguments were made (before the Trainer is): `mixed_precision`,
        which accelerate reads, was derived from `bf16` at init."""
        self.bf16 = enabled
        self.mixed_precision = "bf16" if enabled else "no"

    def _use_time_budget(self) -> None:
        """Evaluation and checkpoints at fractions of the budget (`TimeBudgetCallback`), not every N steps, and a
        loop long enough for the budget to end it."""
        from .budget import parse_duration

        self.max_train_seconds = parse_duration(self.max_train_time)
        if not 0 <= self.warmup_steps < 1:
            raise ValueError(
                f"With `max_train_time`, `warmup_steps` is the fraction of the budget spent warming up, in [0, 1); "
                f"got {self.warmup_steps}."
            )
        if not 0 <= self.lr_decay_fraction <= 1 - self.warmup_steps:
            raise ValueError(
                f"`lr_decay_fraction` must be in [0, 1 - warmup_steps] = [0, {1 - self.warmup_steps}], got "
                f"{self.lr_decay_fraction}."
            )
        if self.eval_strategy == "steps":
            self.eval_steps = self.save_steps = BUDGET_NEVER_STEPS
        if self.max_steps <= 0:
            self.num_train_epochs = BUDGET_NEVER_STEPS  # the budget, not the epochs, ends the run


@dataclass
class HeadArguments:
    """What fine-tuning every head takes; each head's arguments restate `train_file` with its format."""

    model_name_or_path: str = field(metadata={"help": "A trained language-model folder (model + tokenizer)."})
    train_file: str = field(metadata={"help": "Training examples."})
    validation_file: str | None = field(
        default=None, metadata={"help": "Validation examples, in the training file's format."}
    )
    max_length: int = field(default=256, metadata={"help": "Longest input in tokens; longer inputs are truncated."})
    validation_split_percentage: int = field(
        default=10, metadata={"help": "Percent of the training examples held out when there is no validation file."}
    )

    def __post_init__(self):
        check_validation_split_percentage(self.validation_split_percentage)
        if self.max_length < 1:
            raise ValueError(f"`max_length` must be at least 1 token, got {self.max_length}.")


@dataclass
class ClassifierArguments(HeadArguments):
    train_file: str = field(metadata={"help": "Labelled examples: .csv, .json or .jsonl with text and label columns."})
    text_column_name: str = field(default="text", metadata={"help": "Column holding the text."})
    label_column_name: str = field(default="label", metadata={"help": "Column holding the label (any strings)."})


@dataclass
class ClassifierTrainingArguments(LMTrainingArguments):
    """`LMTrainingArguments` with fine-tuning defaults: a smaller learning rate, a few epochs."""

    output_dir: str | None = _default("output_dir", "outputs/classifier")
    learning_rate: float = _default("learning_rate", 1e-4)
    num_train_epochs: float = _default("num_train_epochs", 3.0)
    eval_steps: float | None = _default("eval_steps", 50)
    save_steps: float = _default("save_steps", 50)
