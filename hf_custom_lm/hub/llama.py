"""Plain-Llama conversion both ways: `to_llama(model)` and `from_llama(path_or_model)`.

With `position_embedding_type="rope"`, `norm_type="rmsnorm"`, `mlp_type="gated"` and `hidden_act="silu"`
a CustomLM is a Llama: same maths, same parameter names. The conversion is therefore a config mapping
and an unchanged state dict, loaded with `strict=True` so a name that does not match fails loudly.
A plain Llama folder runs in serving stacks that refuse remote code (they implement Llama's MLP as
SwiGLU only, hence the `silu` requirement).
"""

import copy
from pathlib import Path

from transformers import LlamaConfig, LlamaForCausalLM

from ..folders import load_model
from ..model import CustomLMConfig, CustomLMForCausalLM

# Fields that mean the same thing in both configs and are copied as they are.
SHARED_CONFIG_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "initializer_range",
    "rms_norm_eps", "use_cache", "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings",
    "rope_parameters", "attention_bias", "attention_dropout", "mlp_bias",
)

# The settings that make a CustomLM a Llama; `hidden_dropout` has no Llama field but acts only in training.
LLAMA_SETTINGS = {"position_embedding_type": "rope", "norm_type": "rmsnorm", "mlp_type": "gated", "hidden_act": "silu"}


def check_llama_compatible(config: CustomLMConfig, target: str = "plain Llama") -> None:
    """Raise `ValueError` naming the first setting that has no Llama equivalent (`target`: the format's name)."""
    for name, llama_value in LLAMA_SETTINGS.items():
        value = getattr(config, name)
        if value != llama_value:
            raise ValueError(
                f"Cannot export as {target}: the model has `{name}={value!r}` and a {target} needs "
                f"`{name}={llama_value!r}`. Export with format='custom_lm' (loads with trust_remote_code=True) "
                "or train with the Llama-compatible settings (the default config)."
            )


def to_llama_config(config: CustomLMConfig) -> LlamaConfig:
    check_llama_compatible(config)
    return LlamaConfig(**{name: getattr(config, name) for name in SHARED_CONFIG_FIELDS})


def to_llama(model: CustomLMForCausalLM) -> LlamaForCausalLM:
    """A `LlamaForCausalLM` holding the same weights (same dtype and device) as `model`."""
    if not isinstance(model, CustomLMForCausalLM):
        raise TypeError(f"to_llama expects a CustomLMForCausalLM, got {type(model).__name__}.")
    llama = LlamaForCausalLM(to_llama_config(model.config)).to(device=model.device, dtype=model.dtype)
    llama.load_state_dict(model.state_dict(), strict=True)
    llama.generation_config = copy.deepcopy(model.generation_config)
    return llama.eval()


def from_llama(path_or_model: "str | Path | LlamaForCausalLM") -> CustomLMForCausalLM:
    """A `CustomLMForCausalLM` with the weights of a Llama (a `LlamaForCausalLM` or a folder holding one)."""
    if isinstance(path_or_model, (str, Path)):
        llama = load_model(path_or_model, LlamaForCausalLM)
    elif isinstance(path_or_model, LlamaForCausalLM):
        llama = path_or_model
    else:
        raise TypeError(
            f"from_llama expects a LlamaForCausalLM or a path to one, got {type(path_or_model).__name__}."
        )
    if llama.config.model_type != "llama":
        raise ValueError(f"from_llama expects a Llama checkpoint, got model_type={llama.config.model_type!r}.")
    config = CustomLMConfig(**{name: getattr(llama.config, name) for name in SHARED_CONFIG_FIELDS})
    model = CustomLMForCausalLM(config).to(device=llama.device, dtype=llama.dtype)
    model.load_state_dict(llama.state_dict(), strict=True)
    model.generation_config = copy.deepcopy(llama.generation_config)
    return model.eval()


__all__ = ["check_llama_compatible", "to_llama_config", "to_llama", "from_llama"]
