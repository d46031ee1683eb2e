"""Export a Hub-ready folder and push it.

`export(model, tokenizer, out_dir, ...)` writes a folder that is complete on its own: weights, config,
generation config, tokenizer, the modelling code (`format="custom_lm"`, loaded with
`trust_remote_code=True`) or none at all (`format="llama"`, a plain `LlamaForCausalLM`), and a model
card with its loss-curve figure. `export_run(run_dir, out_dir)` does the same from a training output
folder or a saved model folder. `push.push(out_dir, repo_id)` uploads such a folder.
"""

import json
import logging
from pathlib import Path

from ..folders import check_vocab_fits, inference_use_cache, load_model, load_tokenizer_from, save_model_folder
from ..model import CODE_FILES, CustomLMForCausalLM
from ..training.checkpoints import checkpoint_folders
from .gguf import write_gguf
from .llama import to_llama
from .model_card import LOSS_CURVE_FILENAME, as_dict, plot_loss_curve, render_model_card

logger = logging.getLogger(__name__)

FORMATS = ("custom_lm", "llama", "gguf")
# What `export` writes; with `overwrite=True` these are removed first, so no file of an earlier export
# (a code file, a shard) survives into a folder of another format.
EXPORT_FILES = (
    "config.json", "generation_config.json", "model*.safetensors", "model.safetensors.index.json", *CODE_FILES,
    "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "README.md", LOSS_CURVE_FILENAME,
)


def _check_tokenizer(model: CustomLMForCausalLM, tokenizer) -> None:
    config = model.config
    check_vocab_fits(tokenizer, config)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id != config.eos_token_id:
        raise ValueError(
            f"The tokenizer's eos token id ({tokenizer.eos_token_id}) differs from the model's `eos_token_id` "
            f"({config.eos_token_id}), so generation would not stop at the end of text. Set "
            "`model.config.eos_token_id` and `model.generation_config.eos_token_id` to the tokenizer's."
        )


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    existing = sorted({path.name for pattern in EXPORT_FILES for path in out_dir.glob(pattern)})
    if existing and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds an export ({', '.join(existing)}). Choose a new folder, or pass "
            "overwrite=True (`--overwrite`) to replace these files."
        )
    for name in existing:
        (out_dir / name).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def export(
    model: CustomLMForCausalLM,
    tokenizer,
    out_dir: str | Path,
    *,
    format: str = "custom_lm",
    trainer_state=None,
    metrics: dict | None = None,
    training_args=None,
    dataset_description: str | None = None,
    datasets: list[str] | None = None,
    license: str = "apache-2.0",
    repo_id: str | None = None,
    overwrite: bool = False,
    gguf_type: str | None = None,
) -> Path:
    """Write a self-contained, Hub-ready folder for `model` and `tokenizer`; returns `out_dir`.

    `trainer_state` (a `TrainerState` or its dict), `metrics` (final metrics, e.g. `eval_loss`,
    `perplexity`, `bits_per_byte`, with or without the `eval_` prefix) and `training_args`
    (`TrainingArguments` or dict) feed the model card and its loss curve. `repo_id` is the Hub id the
    card's usage code names (default: the folder's name). `format="llama"` writes a plain
    `LlamaForCausalLM` and refuses, with `ValueError`, a model whose settings Llama lacks.
    `format="gguf"` writes one llama.cpp file instead of a folder and returns its path (see
    `gguf.write_gguf`: `out_dir` may name the `.gguf` file; `gguf_type` "f32", "f16" (default) or "q8_0";
    no model card).
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}: choose one of {FORMATS}.")
    if not isinstance(model, CustomLMForCausalLM):
        raise TypeError(
            f"export expects a CustomLMForCausalLM, got {type(model).__name__}. Load the language model with "
            "`AutoModelForCausalLM.from_pretrained(...)`."
        )
    _check_tokenizer(model, tokenizer)
    if format == "gguf":
        return write_gguf(model, tokenizer, out_dir, gguf_type=gguf_type or "f16", name=repo_id, overwrite=overwrite)
    if gguf_type is not None:
        raise ValueError(
            f"gguf_type={gguf_type!r} applies to format='gguf' only, not format={format!r}: drop it, or export "
            "with format='gguf'."
        )
    out_dir = Path(out_dir)
    llama = to_llama(model) if format == "llama" else None  # refuses incompatible settings before writing
    _prepare_out_dir(out_dir, overwrite)

    if llama is not None:
        with inference_use_cache(llama):  # `use_cache` as before training, as `save_model_folder` writes it
            llama.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    else:
        save_model_folder(model, tokenizer, out_dir)

    trainer_state = as_dict(trainer_state)
    loss_curve = None
    if trainer_state is not None and plot_loss_curve(trainer_state, out_dir / LOSS_CURVE_FILENAME):
        loss_curve = LOSS_CURVE_FILENAME
    card = render_model_card(
        model, model_id=repo_id or out_dir.resolve().name, format=format, trainer_state=trainer_state,
        metrics=metrics, training_args=training_args, dataset_description=dataset_description,
        datasets=datasets, license=license, loss_curve=loss_curve,
    )
    card.save(out_dir / "README.md")
    return out_dir


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_run(run_dir: str | Path) -> dict:
    """Model, tokenizer, trainer state and final metrics of a training output or saved model folder.

    The model is the one saved at the top of `run_dir` (the final one; the best one with
    `load_best_model_at_end`). `trainer_state.json` comes from the top, else from the newest checkpoint;
    metrics from `all_results.json`, else `eval_results.json` + `train_results.json`; the training
    arguments from `training_args.json` (`TrainingArguments.to_json_string()`) when the run wrote one.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a folder: pass a training output folder or a saved model folder.")
    checkpoints = checkpoint_folders(run_dir)[::-1]  # oldest first
    if not (run_dir / "config.json").is_file():
        if checkpoints:
            raise FileNotFoundError(
                f"{run_dir} has checkpoints ({', '.join(p.name for p in checkpoints)}) but no final model at its top: "
                f"the run may not have finished. Export a checkpoint instead, e.g. {checkpoints[-1]}."
            )
        raise FileNotFoundError(
            f"{run_dir} holds no config.json: it is neither a saved model nor a training output folder."
        )
    if not any((run_dir / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise FileNotFoundError(
            f"{run_dir} holds a model but no tokenizer files: save the tokenizer next to the model "
            "(`tokenizer.save_pretrained(run_dir)`) before exporting."
        )
    trainer_state = _read_json(run_dir / "trainer_state.json")
    if trainer_state is None and checkpoints:
        trainer_state = _read_json(checkpoints[-1] / "trainer_state.json")
    metrics = _read_json(run_dir / "all_results.json")
    if metrics is None:
        parts = [_read_json(run_dir / name) for name in ("train_results.json", "eval_results.json")]
        metrics = {k: v for part in parts if part for k, v in part.items()} or None
    return {
        "model": load_model(run_dir),
        "tokenizer": load_tokenizer_from(run_dir),
        "trainer_state": trainer_state,
        "metrics": metrics,
        "training_args": _read_json(run_dir / "training_args.json"),
    }


def export_run(run_dir: str | Path, out_dir: str | Path, *, format: str = "custom_lm", **kwargs) -> Path:
    """`export` of the model in `run_dir` (see `load_run`), its card written from the run's records.

    `kwargs` go to `export` (`dataset_description`, `datasets`, `license`, `repo_id`, `overwrite`, `gguf_type`).
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}: choose one of {FORMATS}.")
    run = load_run(run_dir)
    return export(run.pop("model"), run.pop("tokenizer"), out_dir, format=format, **run, **kwargs)


__all__ = ["FORMATS", "EXPORT_FILES", "export", "export_run", "load_run"]
