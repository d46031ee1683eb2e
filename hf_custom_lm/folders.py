"""Model folders, read and written: the one path every command of this package loads and saves through.

Reading: safetensors only, and errors that name the file. `AutoModel*.from_pretrained` already refuses to
unpickle arbitrary code (torch's `weights_only` loading), but it still *tries* a `pytorch_model.bin`, and
a truncated `model.safetensors` surfaces as a bare `SafetensorError`.

Writing: `save_model_folder` writes the weights, config, tokenizer, the model's code files and an
`auto_map`, so the folder loads with this package imported or, without it, with `trust_remote_code=True`.
"""

import json
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from .model import (
    CustomLMForQuestionAnswering,
    CustomLMForSequenceClassification,
    CustomLMForTokenClassification,
    CustomLMModel,
    CustomLMPreTrainedModel,
)

TOKENIZER_FILES = ("tokenizer.json",)


def _require_folder(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"Model folder {str(folder)!r} does not exist (or is not a folder).")
    return folder


def check_model_folder(path: str | Path) -> Path:
    """Validate config.json and the safetensors weights before transformers reads them."""
    folder = _require_folder(path)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} is missing: this folder was not written by `save_pretrained`.")
    try:
        json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{config_file} is not valid JSON ({err}); re-export the model.") from err

    weights = sorted(folder.glob("model*.safetensors"))
    if not weights:
        pickled = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt*"))
        hint = f" It holds pickled weights ({', '.join(pickled)}), which are never loaded." if pickled else ""
        raise FileNotFoundError(
            f"No model.safetensors in {folder}.{hint} Save the model with `save_pretrained` (safetensors is the default)."
        )
    for weight_file in weights:
        if weight_file.name.endswith(".index.json"):
            continue
        try:
            with safe_open(str(weight_file), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{weight_file} is not a complete safetensors file ({err}); re-save or re-download it.") from err
    return folder


def load_model(path: str | Path, auto_class=AutoModelForCausalLM, **kwargs):
    """`auto_class.from_pretrained(path, use_safetensors=True, **kwargs)` after `check_model_folder`."""
    from . import register_auto_classes

    register_auto_classes()  # deferred by the `hf-custom-lm` command until a job loads a model
    folder = check_model_folder(path)
    return auto_class.from_pretrained(folder, use_safetensors=True, **kwargs)


def load_tokenizer_from(path: str | Path, **kwargs):
    """`AutoTokenizer.from_pretrained` on a folder that must hold a `tokenizer.json`."""
    folder = _require_folder(path)
    missing = [name for name in TOKENIZER_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"Tokenizer folder {folder} lacks {', '.join(missing)}; save the tokenizer there with "
            "`tokenizer.save_pretrained(folder)` or pass the folder that has it."
        )
    return AutoTokenizer.from_pretrained(folder, **kwargs)


def check_vocab_fits(tokenizer, config) -> None:
    """Every id the tokenizer can produce must index the model's embedding matrix."""
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's `vocab_size` is {config.vocab_size}: ids "
            f"past {config.vocab_size - 1} would have no embedding. Use the tokenizer the model was trained with "
            f"(at most {config.vocab_size} tokens), pass `--config_overrides vocab_size={len(tokenizer)}` when "
            "training from scratch, or call `model.resize_token_embeddings(len(tokenizer))`."
        )


# Auto classes an exported CustomLM folder names in its `auto_map`: the modeling file defines them all, and a
# head fine-tuned from a language model starts from `AutoModelFor<Head>.from_pretrained` on its folder.
AUTO_CLASSES = {
    "AutoModel": CustomLMModel.__name__,
    "AutoModelForSequenceClassification": CustomLMForSequenceClassification.__name__,
    "AutoModelForQuestionAnswering": CustomLMForQuestionAnswering.__name__,
    "AutoModelForTokenClassification": CustomLMForTokenClassification.__name__,
}


@contextmanager
def remote_code_registered(model):
    """Make `save_pretrained` copy the code files and write `auto_map`, then restore the classes' state.

    `register_for_auto_class` sets a class attribute; restoring it keeps later saves in this process
    (checkpoints) free of code files. A model transformers ships (a head on a plain Llama folder) has its code
    in transformers: it is saved as it is, without code files or `auto_map`.
    """
    if not isinstance(model, CustomLMPreTrainedModel):
        yield
        return
    config, config_class, model_class = model.config, type(model.config), type(model)
    saved_auto_classes = (config_class._auto_class, model_class._auto_class)
    saved_auto_map = config.auto_map if hasattr(config, "auto_map") else None
    module = model_class.__module__.rsplit(".", 1)[-1]
    own_auto_class = next(
        (auto_class for auto_class, name in AUTO_CLASSES.items() if name == model_class.__name__),
        "AutoModelForCausalLM",
    )
    try:
        config_class.register_for_auto_class()
        model_class.register_for_auto_class(own_auto_class)
        config.auto_map = {
            **(saved_auto_map or {}),
            **{auto_class: f"{module}.{name}" for auto_class, name in AUTO_CLASSES.items()},
        }
        yield
    finally:
        config_class._auto_class, model_class._auto_class = saved_auto_classes
        if saved_auto_map is None:
            del config.auto_map
        else:
            config.auto_map = saved_auto_map


@contextmanager
def inference_use_cache(model):
    """Give `config.use_cache` its value from before training while the model is saved, then restore it.

    The Trainer sets `model.config.use_cache = args.use_cache` (False by default) for training; a folder saved
    with that would return no cache from a plain forward and is refused by transformers' export wrappers.
    `generation_config.use_cache` still holds the config's own value (generation configs are made from the model
    config and the Trainer leaves them alone); heads that do not generate have none and get True.
    """
    config, saved = model.config, model.config.use_cache
    generation_config = getattr(model, "generation_config", None)
    config.use_cache = True if generation_config is None else bool(generation_config.use_cache)
    try:
        yield
    finally:
        config.use_cache = saved


def save_model_folder(model, tokenizer, output_dir: str | Path, training_args=None) -> Path:
    """Write a folder that `Auto*.from_pretrained` loads, with `auto_map` and the model code for remote use,
    `use_cache` as the config had it before training, and `training_args.json` (read by `hub.export_run` for
    the model card) when `training_args` is given."""
    with remote_code_registered(model), inference_use_cache(model):
        model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    if training_args is not None:
        (Path(output_dir) / "training_args.json").write_text(training_args.to_json_string())
    return Path(output_dir)
