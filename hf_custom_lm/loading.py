"""Loading saved folders for our own entry points: safetensors only, and errors that name the file.

`AutoModel*.from_pretrained` already refuses to unpickle arbitrary code (torch's `weights_only`
loading), but it still *tries* a `pytorch_model.bin`, and a truncated `model.safetensors` surfaces as
a bare `SafetensorError`. Every command of this package loads through these functions instead.
"""

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

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
