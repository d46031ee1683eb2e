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

import difflib
import json
import logging
import tempfile
import zipfile
from pathlib import Path

from datasets.exceptions import DatasetGenerationError
from torch import nn
from transformers import AutoTokenizer, EarlyStoppingCallback, Trainer, default_data_collator, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from . import data as lm_data
from .arguments import DataArguments, LMTrainingArguments, ModelArguments
from .callbacks import NonFiniteLossCallback
from .configuration_custom_lm import PRESETS, CustomLMConfig
from .embeddings_init import init_embeddings_from_vectors
from .loading import check_model_folder, load_model, load_tokenizer_from
from .metrics import language_model_metrics
from .modeling_custom_lm import CustomLMForCausalLM

logger = logging.getLogger(__name__)

# Written by `Trainer._save_checkpoint` after the model, optimizer, scheduler and RNG states: its presence
# (and the model's) marks a checkpoint whose save finished. The JIT-checkpoint sentinel marks one that did not.
TRAINER_STATE_NAME = "trainer_state.json"
MODEL_FILES = ("model.safetensors", "model.safetensors.index.json")
INCOMPLETE_SENTINEL = "checkpoint-is-incomplete.txt"


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

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # `evaluate()` passes its metrics dict here before the callbacks and best-model tracking see it, so
        # keys added now reach TensorBoard, the log history, the console and the returned metrics.
        if self.language_model_metrics:
            for key in [k for k in logs if k.endswith("_loss") and k not in ("train_loss",)]:
                prefix = key[: -len("_loss")]
                logs.update(language_model_metrics(logs[key], self.eval_bytes_per_token, prefix=prefix))
        super().log(logs, start_time)


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints and resume
# ---------------------------------------------------------------------------------------------------------------


def _has_optimizer_state(path: Path) -> bool:
    """`optimizer.pt` + `scheduler.pt` (one process, DDP), or FSDP's `optimizer.bin` / `optimizer_0` folder, or
    DeepSpeed's `global_step<N>` folder."""
    if (path / "optimizer.pt").is_file():
        # torch.save writes a zip archive; a cut one has no central directory at its end.
        return zipfile.is_zipfile(path / "optimizer.pt") and (path / "scheduler.pt").is_file()
    return (path / "optimizer.bin").is_file() or any(
        child.is_dir() and child.name.startswith(("optimizer", "global_step")) for child in path.iterdir()
    )


def is_complete_checkpoint(path: str | Path) -> bool:
    """A checkpoint folder whose save finished: whole safetensors weights, optimizer (and scheduler) state and a
    readable trainer_state.json, no sentinel.

    A SIGKILL leaves at worst a folder without trainer_state.json, which the Trainer writes last; a power cut
    can also leave earlier files empty or cut, as writes are not synced. Resuming without the optimizer state
    would restart AdamW from zero without a word, so such a folder does not count either.
    """
    path = Path(path)
    if (path / INCOMPLETE_SENTINEL).exists() or not any((path / name).is_file() for name in MODEL_FILES):
        return False
    try:
        json.loads((path / TRAINER_STATE_NAME).read_text())
        check_model_folder(path)  # every safetensors file opens and covers its header's tensors
    except (OSError, ValueError):
        return False
    return _has_optimizer_state(path)


def checkpoint_folders(output_dir: str | Path) -> list[Path]:
    """`checkpoint-<step>` folders of `output_dir`, newest step first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = path.name[len(PREFIX_CHECKPOINT_DIR) + 1 :]
        if path.is_dir() and step.isdigit():
            found.append((int(step), path))
    return [path for _, path in sorted(found, reverse=True)]


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint in `output_dir`, skipping ones a crash or a signal left half-written."""
    for path in checkpoint_folders(output_dir):
        if is_complete_checkpoint(path):
            return path
        logger.warning(f"Skipping incomplete checkpoint {path} (interrupted while saving, or damaged).")
    return None


def resolve_resume_checkpoint(training_args: LMTrainingArguments) -> str | None:
    """The checkpoint to resume from, or None for a fresh run; refuses to start fresh over old checkpoints."""
    output_dir = training_args.output_dir
    if training_args.resume_from_checkpoint:
        if not is_complete_checkpoint(training_args.resume_from_checkpoint):
            raise FileNotFoundError(
                f"`resume_from_checkpoint` {training_args.resume_from_checkpoint!r} is not a complete checkpoint "
                f"(needs {MODEL_FILES[0]} and {TRAINER_STATE_NAME}); use `--resume` to pick the newest complete one."
            )
        return str(training_args.resume_from_checkpoint)
    if training_args.resume:
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None:
            incomplete = [path.name for path in checkpoint_folders(output_dir)]
            raise FileNotFoundError(
                f"`--resume` found no complete checkpoint in {output_dir!r}"
                + (f" ({', '.join(incomplete)}: interrupted while saving; delete them to start over)" if incomplete
                   else "; drop `--resume` to start a new run") + "."
            )
        logger.info(f"Resuming from {checkpoint}")
        return str(checkpoint)
    existing = checkpoint_folders(output_dir)
    if existing:
        raise ValueError(
            f"{output_dir!r} already holds checkpoints ({existing[0].name}, ...). Pass `--resume` to continue "
            "that run, or choose a new `--output_dir`."
        )
    return None


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer, config, model
# ---------------------------------------------------------------------------------------------------------------


def load_training_tokenizer(tokenizer_name: str | None):
    """The named tokenizer folder, or the one bundled with the package."""
    if tokenizer_name is None:
        from .tokenization import load_tokenizer

        return load_tokenizer()
    try:
        return AutoTokenizer.from_pretrained(tokenizer_name)
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"Could not load a tokenizer from `tokenizer_name` {tokenizer_name!r} ({error}). Pass a folder written "
            "by `tokenizer.save_pretrained` (or `hf-custom-lm train-tokenizer`), or leave it unset for the bundled one."
        ) from None


def _parse_value(key: str, text: str):
    hint = CustomLMConfig.__annotations__[key]
    annotation = getattr(hint, "__name__", str(hint))  # "int", "int | None", "str"
    lowered = text.strip().lower()
    if lowered in ("none", "null") and "None" in annotation:
        return None
    if "bool" in annotation:
        if lowered in ("true", "false"):
            return lowered == "true"
        raise ValueError(f"`{key}` in config_overrides must be true or false, got {text!r}.")
    for cast in (int, float):
        if cast.__name__ in annotation:
            try:
                return cast(text)
            except ValueError:
                continue
    if "str" in annotation:
        return text.strip()
    raise ValueError(f"`{key}` in config_overrides expects {annotation}, got {text!r}.")


def parse_config_overrides(overrides: str | None) -> dict:
    """`"num_hidden_layers=2,hidden_size=128"` -> `{"num_hidden_layers": 2, "hidden_size": 128}`, typed by the
    config's fields; unknown keys are refused with the closest valid names."""
    if not overrides:
        return {}
    result = {}
    for item in overrides.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(
                f"config_overrides item {item!r} is not `key=value`; e.g. `num_hidden_layers=2,hidden_size=128`."
            )
        if key not in CustomLMConfig.__annotations__:
            close = difflib.get_close_matches(key, list(CustomLMConfig.__annotations__), n=3)
            raise ValueError(
                f"Unknown config key {key!r} in config_overrides." + (f" Did you mean {close}?" if close else "")
                + f" Valid keys: {sorted(CustomLMConfig.__annotations__)}."
            )
        result[key] = _parse_value(key, value)
    return result


def build_config(config_name: str, config_overrides: str | None, tokenizer) -> CustomLMConfig:
    """A config from a preset name or a config file/folder, with overrides and the tokenizer's special ids."""
    overrides = parse_config_overrides(config_overrides)
    if config_name in PRESETS:
        config = CustomLMConfig.from_preset(config_name, **overrides)
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


def check_vocab_fits(tokenizer, config) -> None:
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's `vocab_size` is {config.vocab_size}: ids "
            f"past {config.vocab_size - 1} would have no embedding. Use a tokenizer of at most {config.vocab_size} "
            f"tokens or pass `--config_overrides vocab_size={len(tokenizer)}`."
        )


def build_model(model_args: ModelArguments, tokenizer) -> CustomLMForCausalLM:
    """A fresh model from `config_name` (+ overrides), or a trained one from `model_name_or_path`."""
    if model_args.model_name_or_path is None:
        return CustomLMForCausalLM(build_config(model_args.config_name, model_args.config_overrides, tokenizer))
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
    model = load_model(model_args.model_name_or_path, CustomLMForCausalLM)
    check_vocab_fits(tokenizer, model.config)
    return model


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------


def load_text_dataset(**kwargs):
    """`data.load_text_dataset`, naming the files when one cannot be parsed (binary, not UTF-8, broken JSON):
    `datasets` only says "An error occurred while generating the dataset"."""
    try:
        return lm_data.load_text_dataset(**kwargs)
    except DatasetGenerationError as error:
        sources = [kwargs.get("train_file"), kwargs.get("validation_file"), kwargs.get("dataset_name")]
        names = ", ".join(dict.fromkeys(repr(str(source)) for source in sources if source is not None))
        raise ValueError(
            f"Could not read the text of {names} ({error.__cause__ or error}). Text files must be UTF-8 "
            "(.txt, .json/.jsonl with a text field, .csv)."
        ) from error


def prepare_lm_datasets(data_args: DataArguments, tokenizer, max_length: int, seed: int = 42):
    """Packed train and validation blocks, and the validation text's UTF-8 bytes per token.

    With neither `train_file` nor `dataset_name`, the corpus bundled with the package is used.
    """
    train_file, validation_file = data_args.train_file, data_args.validation_file
    if train_file is None and data_args.dataset_name is None:
        if validation_file is not None:
            raise ValueError("`validation_file` needs a `train_file` to go with it.")
        from .tokenization import bundled_corpus_files

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
    packed = lm_data.tokenize_and_pack(
        raw,
        tokenizer,
        block_size=data_args.block_size,
        text_column_name=data_args.text_column_name,
        max_length=max_length,
        num_proc=data_args.preprocessing_num_workers,
        cache_dir=data_args.cache_dir,
    )
    train, validation = packed["train"], packed["validation"]
    if data_args.max_eval_samples is not None:
        if data_args.streaming:
            validation = validation.take(data_args.max_eval_samples)
        else:
            validation = validation.select(range(min(data_args.max_eval_samples, len(validation))))
    return train, validation, lm_data.bytes_per_token(validation)


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------


def save_final(model, tokenizer, output_dir: str | Path, training_args=None) -> Path:
    """Write a folder that `Auto*.from_pretrained` loads, with `auto_map` and the model code for remote use,
    and `training_args.json` (read by `hub.export_run` for the model card) when `training_args` is given."""
    if type(model).__name__.endswith("ForSequenceClassification"):
        auto_class = "AutoModelForSequenceClassification"
    else:
        auto_class = "AutoModelForCausalLM"
    model.config.register_for_auto_class()
    model.register_for_auto_class(auto_class)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    if training_args is not None:
        (Path(output_dir) / "training_args.json").write_text(training_args.to_json_string())
    return Path(output_dir)


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


def build_callbacks(training_args: LMTrainingArguments, checkpoint: str | Path | None = None) -> list:
    """The non-finite-loss stop and early stopping; resuming from `checkpoint`, early stopping continues its
    count of evaluations without improvement (the best metric itself is part of the restored TrainerState)."""
    callbacks = [NonFiniteLossCallback()]
    if training_args.early_stopping_patience:
        early_stopping = EarlyStoppingCallback(
            early_stopping_patience=training_args.early_stopping_patience,
            early_stopping_threshold=training_args.early_stopping_threshold,
        )
        if checkpoint is not None:
            # The Trainer restores callback state only with `restore_callback_states_from_checkpoint`, which
            # also brings back the checkpoint's patience and threshold: keep this run's, restore the count.
            state = json.loads((Path(checkpoint) / TRAINER_STATE_NAME).read_text())
            saved = state.get("stateful_callbacks", {}).get("EarlyStoppingCallback") or {}
            if isinstance(saved, list):  # one entry per EarlyStoppingCallback; ours comes first
                saved = saved[0]
            counter = saved.get("attributes", {}).get("early_stopping_patience_counter", 0)
            early_stopping.early_stopping_patience_counter = counter
        callbacks.append(early_stopping)
    return callbacks


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
    tokenizer = load_training_tokenizer(model_args.tokenizer_name)
    set_seed(training_args.seed)  # the initial weights, identical on every process and in every rerun
    model = build_model(model_args, tokenizer)
    logger.info(f"Model: {model.num_parameters():,} parameters ({model.num_parameters(exclude_embeddings=True):,} "
                "outside embeddings)")

    with training_args.main_process_first(desc="tokenizing and packing"):
        train_dataset, eval_dataset, eval_bytes_per_token = prepare_lm_datasets(
            data_args, tokenizer, model.config.max_position_embeddings, seed=training_args.seed
        )

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

    trainer = CustomLMTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        data_collator=default_data_collator,
        callbacks=build_callbacks(training_args, checkpoint) + list(extra_callbacks or []),
        eval_bytes_per_token=eval_bytes_per_token,
    )
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    train_metrics = {**train_result.metrics, **extra_metrics}
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)

    eval_metrics = trainer.evaluate()
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    trainer.save_state()  # after the final evaluation, so the log history ends with it

    if training_args.should_save:
        save_final(trainer.model, tokenizer, training_args.output_dir, training_args)
    return {**train_metrics, **eval_metrics}


def evaluate_language_model(
    model_dir: str | Path, file: str | Path, block_size: int | None = None, batch_size: int = 8,
    text_column_name: str = "text",
) -> dict[str, float]:
    """Loss, perplexity and bits per byte of a saved model on a text file (the whole file, packed in blocks)."""
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
    blocks = lm_data.tokenize_and_pack(raw, tokenizer, block_size, text_column_name, max_length=max_length)
    dataset = blocks["validation"]
    with tempfile.TemporaryDirectory() as scratch:
        args = LMTrainingArguments(
            output_dir=scratch, per_device_eval_batch_size=batch_size, report_to=[], bf16=False,
            early_stopping_patience=0, eval_strategy="no", load_best_model_at_end=False,
        )
        trainer = CustomLMTrainer(
            model=model, args=args, processing_class=tokenizer, data_collator=default_data_collator,
            eval_bytes_per_token=lm_data.bytes_per_token(dataset),
        )
        metrics = trainer.evaluate(eval_dataset=dataset)
    return {
        "loss": metrics["eval_loss"],
        "perplexity": metrics["eval_perplexity"],
        "bits_per_byte": metrics["eval_bits_per_byte"],
        "tokens": len(dataset) * block_size,
    }


__all__ = [
    "CustomLMTrainer",
    "train_language_model",
    "evaluate_language_model",
    "save_final",
    "last_complete_checkpoint",
    "build_model",
    "build_config",
    "parse_config_overrides",
    "check_output_dir",
]
