"""CustomLM configuration: a flat, typed, validated description of a decoder-only Transformer.

With the defaults (`position_embedding_type="rope"`, `norm_type="rmsnorm"`, `mlp_type="gated"` with
`hidden_act="silu"`) the network is mathematically a Llama and its weights load into
`LlamaForCausalLM` unchanged. The switches reach back to the original Transformer of the seed
article (`from_preset("classic")`: sinusoidal positions, LayerNorm, a two-layer GELU MLP, dropout).

This file is copied next to `modeling_custom_lm.py` when a model is saved for the Hub, so it imports
only `transformers` and `huggingface_hub`.
"""

from huggingface_hub.dataclasses import strict
from transformers import GenerationConfig, PreTrainedConfig
from transformers.modeling_rope_utils import RopeParameters
from transformers.utils import logging

logger = logging.get_logger(__name__)

POSITION_EMBEDDING_TYPES = ("rope", "sinusoidal", "learned")
NORM_TYPES = ("rmsnorm", "layernorm")
MLP_TYPES = ("gated", "plain")
HIDDEN_ACTS = ("silu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "relu2")

# Keys a saved config or `from_pretrained(**kwargs)` may carry beyond the dataclass fields, all read by
# `PreTrainedConfig.__post_init__` or the Auto machinery. Anything else is reported as unknown.
KNOWN_EXTRA_KEYS = {
    "auto_map", "model_type", "architectures", "transformers_version", "name_or_path", "_name_or_path",
    "_commit_hash", "torch_dtype", "num_labels", "rope_scaling", "rope_theta", "partial_rotary_factor",
    "output_attentions", "attn_implementation", "experts_implementation", "per_layer_config",
    "_attn_implementation_internal", "_experts_implementation_internal",
}

# Sizes of the named presets; every other field keeps its default. The bundled tokenizer has 8192
# tokens, which every preset uses. "classic" is the seed's vanilla Transformer at "small" size.
PRESETS = {
    "tiny": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=256),
    "small": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                  max_position_embeddings=512),
    "base": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                 num_key_value_heads=4, max_position_embeddings=1024),
    "classic": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                    max_position_embeddings=512, position_embedding_type="sinusoidal", norm_type="layernorm",
                    mlp_type="plain", hidden_act="gelu", attention_dropout=0.1, hidden_dropout=0.1,
                    layer_norm_eps=1e-5),
}


@strict
class CustomLMConfig(PreTrainedConfig):
    r"""
    Args:
        position_embedding_type (`str`, defaults to `"rope"`):
            `"rope"` rotates queries and keys (Llama); `"sinusoidal"` adds the fixed sin/cos table of
            "Attention Is All You Need" to the token embeddings; `"learned"` adds a trained table of
            `max_position_embeddings` rows (GPT-2), which caps the sequence length.
        norm_type (`str`, defaults to `"rmsnorm"`):
            `"rmsnorm"` (Llama) or `"layernorm"` (with bias, as in the original Transformer). Pre-norm either way.
        mlp_type (`str`, defaults to `"gated"`):
            `"gated"`: `down(act(gate(x)) * up(x))` (SwiGLU with `hidden_act="silu"`); `"plain"`:
            `down(act(up(x)))`, the two-layer feed-forward of the original Transformer.
        hidden_dropout (`float`, defaults to 0.0):
            Dropout on the embeddings and on each residual branch before it is added back.
        layer_norm_eps (`float`, defaults to 1e-5):
            Epsilon of LayerNorm (`rms_norm_eps` is RMSNorm's).
        zero_init_residual (`bool`, defaults to `False`):
            Initialise `o_proj` and `down_proj`, the last projection of each residual branch, to zero, so each
            layer starts as the identity (as torchvision's ResNets do with this name); otherwise they are
            normal with `initializer_range / sqrt(2 * num_hidden_layers)` (GPT-2). Only the start differs.
        fused_loss (`bool`, defaults to `True`):
            In training mode with `labels`, compute the loss fused with the output projection, which never
            builds the (B, T, V) logits, so `logits` is None. Set to `False` for code that reads training-mode
            logits (distillation, custom metrics).

    The other fields mean what they mean in `LlamaConfig`.

    ```python
    >>> from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM
    >>> config = CustomLMConfig.from_preset("tiny")
    >>> model = CustomLMForCausalLM(config)
    ```"""

    model_type = "custom_lm"
    keys_to_ignore_at_inference = ["cache"]
    # Same pipeline-parallel plan as Llama, and Llama's tensor-parallel plan (`base_model_tp_plan`) for the
    # modules this config builds: the names are the same.
    base_model_pp_plan = {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "norm": (["hidden_states"], ["hidden_states"]),
    }

    vocab_size: int = 8192
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 512
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    layer_norm_eps: float = 1e-5
    use_cache: bool = True
    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 0
    tie_word_embeddings: bool = True
    rope_parameters: RopeParameters | dict | None = None
    attention_bias: bool = False
    mlp_bias: bool = False
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    position_embedding_type: str = "rope"
    norm_type: str = "rmsnorm"
    mlp_type: str = "gated"
    zero_init_residual: bool = False
    fused_loss: bool = True

    def __post_init__(self, **kwargs):
        unknown = set(kwargs) - KNOWN_EXTRA_KEYS - set(GenerationConfig().to_dict())
        if unknown:
            logger.warning(
                f"CustomLMConfig got unknown fields {sorted(unknown)}: they are kept on the config but the model "
                "never reads them. Check for typos against the documented field names."
            )
        if self.head_dim is None and self.num_attention_heads:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        super().__post_init__(**kwargs)
        # `@strict` runs these again after `__init__` but wraps their errors; calling them here first
        # gives users the plain `ValueError` that names the field.
        self.validate_architecture()
        self.validate_token_ids()

    @property
    def base_model_tp_plan(self) -> dict[str, str]:
        plan = {
            "layers.*.self_attn.q_proj": "colwise",
            "layers.*.self_attn.k_proj": "colwise",
            "layers.*.self_attn.v_proj": "colwise",
            "layers.*.self_attn.o_proj": "rowwise",
            "layers.*.mlp.gate_proj": "colwise",
            "layers.*.mlp.up_proj": "colwise",
            "layers.*.mlp.down_proj": "rowwise",
        }
        if self.mlp_type == "plain":  # down(act(up(x))): no gate
            del plan["layers.*.mlp.gate_proj"]
        return plan

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "CustomLMConfig":
        """A config from a named size (`tiny`, `small`, `base`) or the seed's `classic` Transformer."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}: choose one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    def validate_architecture(self):
        """Run by `@strict` at construction and on save: refuse values the model cannot be built from."""
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings"):
            value = getattr(self, name)
            if value is None or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        choices = {"position_embedding_type": POSITION_EMBEDDING_TYPES, "norm_type": NORM_TYPES,
                   "mlp_type": MLP_TYPES, "hidden_act": HIDDEN_ACTS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(self, name)!r}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`num_attention_heads` ({self.num_attention_heads}) must divide `hidden_size` "
                f"({self.hidden_size}); pick a head count that divides it, e.g. {self.hidden_size // 64 or 1}."
            )
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError(
                f"`num_key_value_heads` ({self.num_key_value_heads}) must divide `num_attention_heads` "
                f"({self.num_attention_heads}) for grouped-query attention."
            )
        if self.position_embedding_type == "rope" and self.head_dim % 2 != 0:
            raise ValueError(f"`head_dim` must be even for rotary positions, got {self.head_dim}.")
        if self.position_embedding_type == "sinusoidal" and self.hidden_size % 2 != 0:
            raise ValueError(f"`hidden_size` must be even for sinusoidal positions, got {self.hidden_size}.")
        default_rope = {"rope_type": "default", "rope_theta": self.default_theta}
        if self.position_embedding_type != "rope" and dict(self.rope_parameters or default_rope) != default_rope:
            # A reloaded config carries the defaults that `PreTrainedConfig` fills in; only other values are refused.
            raise ValueError(
                f"`rope_parameters` ({self.rope_parameters}) act on rotary positions only, but "
                f"`position_embedding_type` is {self.position_embedding_type!r}: drop `rope_parameters` (and "
                "`rope_scaling` / `rope_theta`) or use `position_embedding_type='rope'`."
            )
        for name in ("attention_dropout", "hidden_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {getattr(self, name)!r}.")

    def validate_token_ids(self):
        """Special token ids must index the embedding matrix (transformers only warns; we refuse)."""
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            for token_id in value if isinstance(value, list) else [value]:
                if token_id is not None and not 0 <= token_id < self.vocab_size:
                    raise ValueError(
                        f"`{name}` ({token_id}) is outside the vocabulary [0, {self.vocab_size}); use the id "
                        "the tokenizer gives (`tokenizer.eos_token_id`) or None."
                    )


__all__ = ["CustomLMConfig"]
