"""Train a CustomLM causal language model with the transformers `Trainer`.

    metrics = train_language_model(ModelArguments(), DataArguments(), LMTrainingArguments(output_dir="out"))

What the Trainer brings unchanged: AdamW (fused where torch has it), the learning-rate schedule (cosine
after linear warm-up by default, see `LMTrainingArguments`), gradient clipping and accumulation, bf16
autocast, gradient checkpointing, `torch.compile`, checkpoints with rotation that never deletes the best
one, resume, TensorBoard, multi-process training through accelerate. The cross-entropy is the model's own
(`labels` path, normalised by the tokens of the whole accumulated batch).

What this module adds: embeddings excluded from weight decay, perplexity and bits per byte in every
evaluation log, early stopping, a stop on a non-finite loss, resuming from the newest *complete*
checkpoint, word-vector initialisation of the embeddings, and checks that refuse bad input before training.
"""

import dataclasses
import difflib
import json
import logging
import tempfile
from pathlib import Path

from datasets import IterableDataset
from transformers import AutoTokenizer, default_data_collator, set_seed

from ..folders import (
    check_vocab_fits,
    load_model,
    load_tokenizer_from,
    save_model_folder,
)
from ..model import PRESETS, CustomLMConfig, CustomLMForCausalLM
from .arguments import DataArguments, LMTrainingArguments, ModelArguments
from .checkpoints import resolve_resume_checkpoint
from .data import load_text_dataset, resolve_files
from .embeddings_init import init_embeddings_from_vectors
from .loss_curve import LOSS_CURVE_FILENAME, plot_loss_curve
from .packing import bytes_per_token, tokenize_and_pack
from .report import run_summary
from .precision import choose_precision
from .optimizers import EMBEDDING_LR_MULTIPLIER, resolve_hidden_optimizer
from .sampled_softmax import SampledSoftmaxCallback, resolve_sampled_softmax
from .shifted_blocks import shifted_training_blocks
from .sizing import size_model
from .tokenization import bundled_corpus_files, load_tokenizer, train_tokenizer
from .trainer import CustomLMTrainer, build_trainer

logger = logging.getLogger(__name__)

# Validation blocks read by each periodic evaluation of a time-budgeted run, unless `max_eval_samples` says.
BUDGET_EVAL_SAMPLES = 64
# A tokenizer is trained on the user's own text from this many bytes of it; below, the bundled one is kept.
OWN_TOKENIZER_MIN_BYTES = 1_000_000
OWN_TOKENIZER_VOCAB_SIZE = 8192
OWN_TOKENIZER_DIR = "tokenizer"


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer, config, model
# ---------------------------------------------------------------------------------------------------------------


def load_training_tokenizer(tokenizer_name: str | None):
    """The named tokenizer folder, or the one bundled with the package."""
    if tokenizer_name is None:
        return load_tokenizer()
    try:
        return AutoTokenizer.from_pretrained(tokenizer_name)
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"Could not load a tokenizer from `tokenizer_name` {tokenizer_name!r} ({error}). Pass a folder written "
            "by `tokenizer.save_pretrained` (or `hf-custom-lm train-tokenizer`), or leave it unset for the bundled one."
        ) from None


def tokenizer_for_run(model_args: ModelArguments, data_args: DataArguments, training_args: LMTrainingArguments):
    """The tokenizer a run trains with: `tokenizer_name`; else, for a model trained from scratch on the user's
    own files, one trained on that text (saved in `output_dir/tokenizer`, reused by `--resume`) when there is
    enough of it; else the bundled one, saying why."""
    if model_args.tokenizer_name is not None or data_args.train_file is None or model_args.model_name_or_path:
        return load_training_tokenizer(model_args.tokenizer_name)
    folder = Path(training_args.output_dir) / OWN_TOKENIZER_DIR
    with training_args.main_process_first(desc="training a tokenizer on the training text"):
        if folder.is_dir():
            return AutoTokenizer.from_pretrained(folder)
        size = sum(path.stat().st_size for path in resolve_files(data_args.train_file, "train_file"))
        if size < OWN_TOKENIZER_MIN_BYTES:
            logger.info(
                f"Keeping the bundled tokenizer: the training text ({size:,} bytes) is too little to learn "
                f"{OWN_TOKENIZER_VOCAB_SIZE} tokens from (that takes {OWN_TOKENIZER_MIN_BYTES:,}); pass "
                "`--tokenizer_name` to use another."
            )
            return load_tokenizer()
        raw = load_text_dataset(
            train_file=data_args.train_file, validation_file=data_args.validation_file,
            text_column_name=data_args.text_column_name,
            validation_split_percentage=data_args.validation_split_percentage, seed=training_args.seed,
            cache_dir=data_args.cache_dir,
        )
        tokenizer = train_tokenizer(
            dataset=raw["train"], text_column=data_args.text_column_name, vocab_size=OWN_TOKENIZER_VOCAB_SIZE,
            output_dir=folder if training_args.should_save else None,
        )
        logger.info(f"Trained a byte-level BPE tokenizer of {len(tokenizer)} tokens on the training text "
                    f"({size:,} bytes): {folder}")
        return tokenizer


def parse_config_overrides(overrides: str | None) -> dict:
    """`"num_hidden_layers=2,hidden_size=128"` -> `{"num_hidden_layers": 2, "hidden_size": 128}`, typed by
    transformers' `PreTrainedConfig.update_from_string` (as run_clm does); unknown keys are refused with the
    closest valid names. The values then build the config, so fields derived from them (`head_dim`) follow."""
    if not overrides:
        return {}
    keys = [item.partition("=")[0].strip() for item in overrides.split(",") if item.strip()]
    for key in keys:
        if not hasattr(CustomLMConfig(), key):
            close = difflib.get_close_matches(key, list(CustomLMConfig.__annotations__), n=3)
            raise ValueError(
                f"Unknown config key {key!r} in config_overrides." + (f" Did you mean {close}?" if close else "")
                + f" Valid keys: {sorted(CustomLMConfig.__annotations__)}."
            )
    scratch = CustomLMConfig()
    try:
        scratch.update_from_string(",".join(item.strip() for item in overrides.split(",") if item.strip()))
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"config_overrides {overrides!r} cannot be read ({error}); write `key=value` pairs separated by commas, "
            "e.g. `num_hidden_layers=2,hidden_size=128,tie_word_embeddings=false`."
        ) from None
    return {key: getattr(scratch, key) for key in keys}


def build_config(config_name: str, config_overrides: str | None, tokenizer, shape: dict | None = None) -> CustomLMConfig:
    """A config from a preset name, `auto` with the `shape` chosen by `sizing.size_for_budget`, or a config
    file/folder; then the overrides and the tokenizer's special ids. Presets and `auto` take `vocab_size` from
    the tokenizer; a config file keeps its own (which the tokenizer must fit)."""
    overrides = parse_config_overrides(config_overrides)
    if config_name == "auto":
        if shape is None:
            raise ValueError(
                "`config_name` auto sizes the model for a time budget: pass `--max_train_time` (e.g. `10m`), or "
                f"choose a preset ({', '.join(PRESETS)})."
            )
        config = CustomLMConfig(**{"vocab_size": len(tokenizer), **shape, **overrides})
    elif config_name in PRESETS:  # a preset is a shape: its vocabulary is the tokenizer's (an unused row costs time)
        config = CustomLMConfig.from_preset(config_name, **{"vocab_size": len(tokenizer), **overrides})
    elif Path(config_name).exists():
        config = CustomLMConfig.from_pretrained(config_name, **overrides)
    else:
        raise FileNotFoundError(
            f"`config_name` {config_name!r} is neither a preset ({', '.join(PRESETS)}) nor an existing config "
            "file or folder."
        )
    check_vocab_fits(tokenizer, config)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if name not in overrides:
            token_id = getattr(tokenizer, name)
            if name == "bos_token_id" and token_id is None:
                token_id = tokenizer.eos_token_id  # GPT-2 style: one end-of-text token for both
            setattr(config, name, token_id)
    config.validate_token_ids()
    return config


def build_model(model_args: ModelArguments, tokenizer, shape: dict | None = None) -> CustomLMForCausalLM:
    """A fresh model from `config_name` (+ overrides), or a trained one from `model_name_or_path`."""
    if model_args.model_name_or_path is None:
        config_name = model_args.config_name or "tiny"
        return CustomLMForCausalLM(build_config(config_name, model_args.config_overrides, tokenizer, shape))
    if model_args.config_overrides:
        raise ValueError(
            "`config_overrides` applies to a model trained from scratch, not to `model_name_or_path` "
            f"{model_args.model_name_or_path!r}; drop one of the two."
        )
    if not Path(model_args.model_name_or_path).is_dir():
        raise FileNotFoundError(
            f"`model_name_or_path` {model_args.model_name_or_path!r} is not a folder; pass a folder written by "
            "`save_pretrained` (e.g. a previous run's output_dir), or leave it unset to train from scratch."
        )
    config_file = Path(model_args.model_name_or_path) / "config.json"
    model_type = json.loads(config_file.read_text()).get("model_type") if config_file.is_file() else None
    if model_type not in (None, CustomLMConfig.model_type):
        raise ValueError(
            f"`model_name_or_path` {model_args.model_name_or_path!r} holds a {model_type!r} model; training continues "
            "CustomLM folders only. For a plain Llama folder, convert it first: "
            "`hf_custom_lm.from_llama(folder).save_pretrained(new_folder)`, then pass `new_folder`."
        )
    model = load_model(model_args.model_name_or_path, CustomLMForCausalLM)
    check_vocab_fits(tokenizer, model.config)
    return model


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------


def prepare_lm_datasets(data_args: DataArguments, tokenizer, max_length: int, seed: int = 42):
    """Packed train and validation blocks.

    With neither `train_file` nor `dataset_name`, the corpus bundled with the package is used.
    """
    train_file, validation_file = data_args.train_file, data_args.validation_file
    if train_file is None and data_args.dataset_name is None:
        if validation_file is not None:
            raise ValueError("`validation_file` needs a `train_file` to go with it.")
        files = bundled_corpus_files()
        train_file, validation_file = str(files["train"]), str(files["validation"])
    raw = load_text_dataset(
        train_file=train_file,
        validation_file=validation_file,
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        text_column_name=data_args.text_column_name,
        streaming=data_args.streaming,
        validation_split_percentage=data_args.validation_split_percentage,
        seed=seed,
        cache_dir=data_args.cache_dir,
    )
    packed = tokenize_and_pack(
        raw,
        tokenizer,
        block_size=data_args.block_size,
        text_column_name=data_args.text_column_name,
        max_length=max_length,
        num_proc=data_args.preprocessing_num_workers,
        cache_dir=data_args.cache_dir,
        document_masking=data_args.document_masking,
    )
    # As run_clm: the first `max_train_samples` blocks only, for quick runs.
    return evaluation_sample(packed["train"], data_args.max_train_samples), packed["validation"]


def evaluation_sample(validation, max_eval_samples: int | None, spread: bool = False):
    """`max_eval_samples` blocks (all when None): the first ones, or with `spread` ones evenly spaced over the
    dataset, so that periodic evaluation (and the best checkpoint it picks) scores every part of the validation
    text and not only its first document. A stream can only give its first ones."""
    if max_eval_samples is None:
        return validation
    if isinstance(validation, IterableDataset):
        return validation.take(max_eval_samples)
    count = min(max_eval_samples, len(validation))
    if spread:
        return validation.select([index * len(validation) // count for index in range(count)])
    return validation.select(range(count))


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------


def check_output_dir(output_dir: str | Path) -> None:
    """Create `output_dir` and write a file in it: a path that cannot hold checkpoints fails before any data
    is read or step taken (permissions, a file where a folder should be, a read-only or virtual file system)."""
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        raise ValueError(
            f"`output_dir` {str(output_dir)!r} cannot hold the run ({error.strerror or error}: "
            f"{error.filename or output_dir}); choose another `--output_dir`."
        ) from error


def train_language_model(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: LMTrainingArguments,
    extra_callbacks: list | None = None,
) -> dict[str, float]:
    """Check the inputs, build model and data, train, evaluate, save; returns train and eval metrics.

    `output_dir` receives the checkpoints, TensorBoard logs (`runs/`), `train_results.json`,
    `eval_results.json`, `all_results.json` and the final model (the best one when
    `load_best_model_at_end`) with its tokenizer.
    """
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("A streaming dataset has no length: set `max_steps` to the number of optimizer steps.")
    if training_args.logging_nan_inf_filter:
        logger.warning("`logging_nan_inf_filter` hides NaN losses from the non-finite-loss check; only the "
                       "gradient norm is checked.")
    if training_args.should_save:
        check_output_dir(training_args.output_dir)
    checkpoint = resolve_resume_checkpoint(training_args)
    tokenizer = tokenizer_for_run(model_args, data_args, training_args)
    # before the sizing, whose probe times the run's optimizer step
    resolve_hidden_optimizer(training_args, model_args.model_name_or_path is None, checkpoint)
    shape = datasets = None
    if model_args.model_name_or_path is None and model_args.config_name in (None, "auto") and training_args.max_train_time:
        model_args.config_name = "auto"
        overrides = parse_config_overrides(model_args.config_overrides)
        # the text first: the sizing weighs the passes over it that each shape would make
        max_length = overrides.get("max_position_embeddings", max(data_args.block_size, 256))
        with training_args.main_process_first(desc="tokenizing and packing"):
            datasets = prepare_lm_datasets(data_args, tokenizer, max_length, seed=training_args.seed)
        train_tokens = None if isinstance(datasets[0], IterableDataset) else len(datasets[0]) * data_args.block_size
        # the probe times the step the run will take, with the sampled softmax if it will use one
        draws = resolve_sampled_softmax(training_args, len(tokenizer), overrides.get("fused_loss", True))
        with training_args.main_process_first(desc="sizing the model for the budget"):
            shape = size_model(training_args, data_args, tokenizer, resuming=checkpoint is not None,
                               sampled_softmax=draws, train_tokens=train_tokens)
    set_seed(training_args.seed)  # the initial weights, identical on every process and in every rerun
    model = build_model(model_args, tokenizer, shape)
    logger.info(f"Model: {model.num_parameters():,} parameters ({model.num_parameters(exclude_embeddings=True):,} "
                "outside embeddings)")
    if training_args.embedding_lr_multiplier is None:  # a gain for AdamW from scratch only (optimizers.py)
        from_scratch = model_args.model_name_or_path is None
        adamw = training_args.hidden_optimizer == "adamw"
        training_args.embedding_lr_multiplier = EMBEDDING_LR_MULTIPLIER if from_scratch and adamw else 1.0

    if shape is None:  # a model sized for the budget has its precision from the sizing's probe
        fused_loss = model.config.fused_loss
        choose_precision(model.config, training_args, data_args.block_size,
                         resolve_sampled_softmax(training_args, model.config.vocab_size, fused_loss),
                         resuming=checkpoint is not None)

    if datasets is None:
        with training_args.main_process_first(desc="tokenizing and packing"):
            datasets = prepare_lm_datasets(data_args, tokenizer, model.config.max_position_embeddings,
                                           seed=training_args.seed)
    train_dataset, validation = datasets
    # Periodic evaluations read a sample (with a time budget, a small one by default: they count against it);
    # the final evaluation reads every validation block.
    max_eval_samples = data_args.max_eval_samples
    if max_eval_samples is None and training_args.max_train_time is not None:
        max_eval_samples = BUDGET_EVAL_SAMPLES
    eval_dataset = evaluation_sample(validation, max_eval_samples, spread=True)

    extra_metrics = {}
    if model_args.embedding_vectors_file:
        report = init_embeddings_from_vectors(
            model, tokenizer, model_args.embedding_vectors_file, freeze=model_args.freeze_pretrained_embeddings
        )
        logger.info(
            f"Embeddings: {len(report.covered_token_ids)} of {report.vocab_size} tokens ({report.coverage:.1%}) set "
            f"from {report.vectors_read} word vectors of dimension {report.vector_dim}"
            + (", frozen" if report.frozen else "")
        )
        extra_metrics["embedding_coverage"] = report.coverage

    if data_args.shift_block_boundaries:
        train_dataset, shift_callbacks = shifted_training_blocks(train_dataset, tokenizer.eos_token_id, training_args)
        extra_callbacks = [*(extra_callbacks or ()), *shift_callbacks]
    trainer = build_trainer(
        model, training_args, tokenizer, train_dataset, eval_dataset, default_data_collator, checkpoint,
        extra_callbacks=extra_callbacks or (), eval_bytes_per_token=bytes_per_token(eval_dataset),
    )
    draws = resolve_sampled_softmax(training_args, model.config.vocab_size, model.config.fused_loss)
    if draws:
        budget = trainer.time_budget
        trainer.add_callback(SampledSoftmaxCallback(
            draws, training_args.lr_decay_fraction, budget.clock if budget else None, seed=training_args.seed
        ))
        logger.info(f"Output head: a sampled softmax of {draws} draws a step, then the full softmax for the last "
                    f"{training_args.lr_decay_fraction:.0%} of training (`--sampled_softmax 0`: the full softmax "
                    "throughout).")
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    train_metrics = {**train_result.metrics, **extra_metrics, **run_summary(trainer, data_args.block_size)}
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)

    trainer.eval_bytes_per_token = bytes_per_token(validation)
    eval_metrics = trainer.evaluate(eval_dataset=validation)
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    trainer.save_state()  # after the final evaluation, so the log history ends with it

    if training_args.should_save:
        save_model_folder(trainer.model, tokenizer, training_args.output_dir, training_args)
        record_block_size(Path(training_args.output_dir), data_args.block_size)
        curve = plot_loss_curve(dataclasses.asdict(trainer.state), Path(training_args.output_dir) / LOSS_CURVE_FILENAME)
        if curve is not None:
            logger.info(f"Loss curve: {curve}")
    return {**train_metrics, **eval_metrics}


def record_block_size(run_dir: Path, block_size: int) -> None:
    """Add the training sequence length to the run's `training_args.json`, for the model card."""
    record = run_dir / "training_args.json"
    values = json.loads(record.read_text())
    record.write_text(json.dumps({**values, "block_size": block_size}, indent=2))


def evaluate_language_model(
    model_dir: str | Path, file: str | Path, block_size: int | None = None, batch_size: int = 8,
    text_column_name: str = "text", document_masking: bool = True,
) -> dict[str, float]:
    """Loss, perplexity and bits per byte of a saved model on a text file (the whole file, packed in blocks;
    with `document_masking`, as training does by default, each document is scored on its own)."""
    if not Path(model_dir).is_dir():
        raise FileNotFoundError(f"Model folder {str(model_dir)!r} does not exist; pass a folder written by training.")
    model = load_model(model_dir)
    tokenizer = load_tokenizer_from(model_dir)
    check_vocab_fits(tokenizer, model.config)
    max_length = model.config.max_position_embeddings
    if block_size is None:
        block_size = min(max_length, 512)
    raw = load_text_dataset(train_file=file, validation_file=file, text_column_name=text_column_name)
    raw.pop("train")  # the file is only evaluated
    blocks = tokenize_and_pack(raw, tokenizer, block_size, text_column_name, max_length=max_length,
                               document_masking=document_masking)
    dataset = blocks["validation"]
    with tempfile.TemporaryDirectory() as scratch:
        args = LMTrainingArguments(
            output_dir=scratch, per_device_eval_batch_size=batch_size, report_to=[], bf16=False,
            early_stopping_patience=0, eval_strategy="no", load_best_model_at_end=False,
        )
        trainer = CustomLMTrainer(
            model=model, args=args, processing_class=tokenizer, data_collator=default_data_collator,
            eval_bytes_per_token=bytes_per_token(dataset),
        )
        metrics = trainer.evaluate(eval_dataset=dataset)
    return {
        "loss": metrics["eval_loss"],
        "perplexity": metrics["eval_perplexity"],
        "bits_per_byte": metrics["eval_bits_per_byte"],
        "tokens": len(dataset) * block_size,
    }


__all__ = [
    "train_language_model",
    "evaluate_language_model",
    "build_model",
    "build_config",
    "parse_config_overrides",
    "check_output_dir",
]
