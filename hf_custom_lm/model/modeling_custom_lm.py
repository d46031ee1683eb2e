"""CustomLM, written the way transformers writes Llama: input checks, norms, positions, attention helpers, MLPs,
attention, decoder layer, pretrained base, model, heads. With the default config the maths and parameter names
are Llama's. Speed lives behind plain functions in `kernels_custom_lm.py`, `generate`'s in-place cache in
`cache_custom_lm.py`; copied to the Hub with them and the configuration, it imports only torch and transformers.

Shape legend: B batch, T query length, S key length (cache + T), D hidden_size, H attention heads,
Hkv key/value heads, hd head_dim, I intermediate_size, V vocab_size.
"""

import math
from collections.abc import Callable

import torch
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.loss.loss_utils import LOSS_MAPPING
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast, CausalLMOutputWithPast, QuestionAnsweringModelOutput, SequenceClassifierOutputWithPast,
    TokenClassifierOutput,
)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, PreTrainedModel
from transformers.utils.deprecation import deprecate_kwarg

from .cache_custom_lm import GrowingCacheGenerationMixin
from .configuration_custom_lm import CustomLMConfig
from .kernels_custom_lm import apply_rotary_pos_emb, autocast_dtype, linear_cross_entropy, rms_norm, swiglu


def check_inputs(config: CustomLMConfig, input_ids, attention_mask, position_ids, expected_mask_shape) -> None:
    """Say what is wrong where torch would raise a bare IndexError (a device assert on GPU) or silently cut a mask."""
    low, high = torch.aminmax(input_ids) if input_ids is not None and input_ids.numel() else (0, 0)
    if low < 0 or high >= config.vocab_size:
        raise ValueError(
            f"`input_ids` must lie in [0, {config.vocab_size}) (the model's `vocab_size`), got values from "
            f"{low.item()} to {high.item()}. Use the tokenizer this model was trained with, or call "
            "`model.resize_token_embeddings(len(tokenizer))` after adding tokens."
        )
    if attention_mask is not None and attention_mask.dim() == 2 and tuple(attention_mask.shape) != expected_mask_shape:
        raise ValueError(
            f"`attention_mask` has shape {tuple(attention_mask.shape)} but the input needs {expected_mask_shape} (one "
            "column per token, cached ones included): pass the mask the tokenizer returned with these `input_ids`, "
            "extended by one column per generated token."
        )
    last = position_ids.max() if config.position_embedding_type == "learned" and position_ids.numel() else -1
    if last >= config.max_position_embeddings:  # a learned table has no row for it
        raise ValueError(
            f"Position {int(last)} is past `max_position_embeddings` ({config.max_position_embeddings}) of this "
            "model's learned position table. Truncate the input (tokenizer `truncation=True, max_length=...`) or "
            "lower `max_new_tokens`."
        )


class CustomLMRMSNorm(nn.Module):
    """Llama's RMSNorm: statistics in fp32 so bf16 activations keep their scale. Under autocast the output is
    cast once to the autocast dtype, which the q, k and v projections reading it would otherwise each cast again."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        output = rms_norm(hidden_states, self.weight, self.variance_epsilon)
        compute_dtype = autocast_dtype(output)
        return output if compute_dtype is None else output.to(compute_dtype)


def build_norm(config: CustomLMConfig) -> nn.Module:
    if config.norm_type == "layernorm":  # with bias, as in the original Transformer
        return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
    return CustomLMRMSNorm(config.hidden_size, eps=config.rms_norm_eps)


def build_dropout(p: float) -> nn.Module:
    """Identity when p is 0 (the default): the residual branches then skip a call that returns its input."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


class CustomLMRotaryEmbedding(nn.Module):
    """Llama's cos/sin tables (B, T, hd) from `position_ids` (so left padding works), for every `rope_type` of
    `ROPE_INIT_FUNCTIONS`; `dynamic_rope_update` recomputes `inv_freq` for `dynamic` and `longrope`, as in Llama."""

    def __init__(self, config: CustomLMConfig):
        super().__init__()
        self.config = config
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings
        self.rope_type = config.rope_parameters["rope_type"]
        rope_init_fn = ROPE_INIT_FUNCTIONS.get(self.rope_type, self.compute_default_rope_parameters)
        inv_freq, self.attention_scaling = rope_init_fn(config)
        self.inv_freq = nn.Buffer(inv_freq, persistent=False)  # (hd/2,)
        self.original_inv_freq = nn.Buffer(inv_freq.clone(), persistent=False)

    @staticmethod
    def compute_default_rope_parameters(config: CustomLMConfig, **kwargs) -> tuple[torch.Tensor, float]:
        """theta^(-2i/hd) for i < hd/2, and no scaling; named as `PreTrainedModel._init_weights` looks it up."""
        exponents = torch.arange(0, config.head_dim, 2, dtype=torch.int64).float() / config.head_dim
        return 1.0 / config.rope_parameters["rope_theta"] ** exponents, 1.0

    @torch.no_grad()
    @dynamic_rope_update
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # fp32 angles even under autocast: positions in the thousands lose precision in bf16.
        with torch.autocast(device_type=x.device.type, enabled=False):
            freqs = position_ids[..., None].float() * self.inv_freq.float()  # (B, T, hd/2)
            angles = torch.cat((freqs, freqs), dim=-1)  # (B, T, hd)
            cos, sin = angles.cos(), angles.sin()
            if self.attention_scaling != 1.0:  # yarn, longrope
                cos, sin = cos * self.attention_scaling, sin * self.attention_scaling
        dtype = autocast_dtype(x) or x.dtype  # q and k under autocast are already in it
        return cos.to(dtype), sin.to(dtype)


def sinusoidal_position_embeddings(position_ids: torch.Tensor, dim: int) -> torch.Tensor:
    """The fixed table of "Attention Is All You Need", even channels sin, odd cos: (B, T) -> (B, T, dim) in fp32,
    computed from the ids, so any length and left padding work."""
    exponents = torch.arange(0, dim, 2, device=position_ids.device, dtype=torch.float32)
    inv_freq = torch.exp(exponents * (-math.log(10000.0) / dim))
    angles = position_ids[..., None].float() * inv_freq  # (B, T, dim/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, Hkv, S, hd) -> (B, Hkv * n_rep, S, hd): share each key/value head across its query group."""
    batch, num_key_value_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, slen, head_dim)


def eager_attention_forward(
    module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
    attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0, **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(QK^T / sqrt(hd) + mask) V. Returns (B, T, H, hd) and the weights (B, H, T, S)."""
    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value_states)
    return attn_output.transpose(1, 2).contiguous(), attn_weights


class CustomLMGatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)): SwiGLU with `hidden_act="silu"` (Llama)."""

    def __init__(self, config: CustomLMConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.down_proj.is_residual_projection = True  # read by `_init_weights`
        self.act_fn = ACT2FN[config.hidden_act]
        self.is_swiglu = config.hidden_act == "silu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_proj(x), self.up_proj(x)  # (B, T, I)
        hidden = swiglu(gate, up) if self.is_swiglu else self.act_fn(gate) * up
        return self.down_proj(hidden)


class CustomLMPlainMLP(nn.Module):
    """down(act(up(x))): the two-layer feed-forward of the original Transformer."""

    def __init__(self, config: CustomLMConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.down_proj.is_residual_projection = True  # read by `_init_weights`
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(x)))


def build_mlp(config: CustomLMConfig) -> nn.Module:
    return CustomLMPlainMLP(config) if config.mlp_type == "plain" else CustomLMGatedMLP(config)


class CustomLMAttention(nn.Module):
    """Multi-head (or grouped-query) causal self-attention through transformers' attention interface."""

    def __init__(self, config: CustomLMConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = True
        self.use_rope = config.position_embedding_type == "rope"

        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=config.attention_bias)
        self.k_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=config.attention_bias)
        self.v_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=config.attention_bias)
        self.o_proj = nn.Linear(config.num_attention_heads * self.head_dim, config.hidden_size, bias=config.attention_bias)
        self.o_proj.is_residual_projection = True  # read by `_init_weights`

    def forward(
        self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor] | None,
        attention_mask: torch.Tensor | None, cache: Cache | None = None, **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]  # (B, T)
        hidden_shape = (*input_shape, -1, self.head_dim)
        query_states = self.q_proj(hidden_states).view(hidden_shape)  # (B, T, H, hd)
        key_states = self.k_proj(hidden_states).view(hidden_shape)  # (B, T, Hkv, hd)
        value_states = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)  # (B, Hkv, T, hd)
        if self.use_rope:
            cos, sin = position_embeddings
            query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
        query_states, key_states = query_states.transpose(1, 2), key_states.transpose(1, 2)  # (B, H(kv), T, hd)

        if cache is not None:
            key_states, value_states = cache.update(key_states, value_states, self.layer_idx)  # (B, Hkv, S, hd)

        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        # `output_attentions` rides in kwargs, as in Llama: eager returns the weights, sdpa warns and returns None.
        attn_output, attn_weights = attention_interface(
            self, query_states, key_states, value_states, attention_mask,
            dropout=self.attention_dropout if self.training else 0.0, scaling=self.scaling, **kwargs,
        )
        attn_output = attn_output.reshape(*input_shape, -1).contiguous()  # (B, T, H * hd)
        return self.o_proj(attn_output), attn_weights


class CustomLMDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm block: h = x + drop(attn(norm(x))); out = h + drop(mlp(norm(h)))."""

    def __init__(self, config: CustomLMConfig, layer_idx: int):
        super().__init__()
        self.self_attn = CustomLMAttention(config, layer_idx)
        self.mlp = build_mlp(config)
        self.input_layernorm = build_norm(config)
        self.post_attention_layernorm = build_norm(config)
        self.dropout = build_dropout(config.hidden_dropout)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None, cache: Cache | None = None, **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_out, attn_weights = self.self_attn(
            self.input_layernorm(hidden_states), position_embeddings=position_embeddings,
            attention_mask=attention_mask, cache=cache, **kwargs,
        )
        hidden_states = hidden_states + self.dropout(attn_out)
        hidden_states = hidden_states + self.dropout(self.mlp(self.post_attention_layernorm(hidden_states)))
        return hidden_states, attn_weights


def tied_weights_loaded(module: nn.Module, incompatible_keys) -> None:
    """`load_state_dict` post-hook: a tied parameter loads with the parameter it shares, so it is not missing.

    `save_pretrained` leaves `lm_head.weight` out of the file when it is the embedding matrix, and a plain
    `load_state_dict` of that file (the Trainer's `load_best_model_at_end`) would report it missing. Keys carry
    the prefix of any wrapper (PEFT), hence the suffix match.
    """
    missing = incompatible_keys.missing_keys
    for target, source in module._tied_weights_keys.items():
        if module.get_parameter(target) is not module.get_parameter(source):
            continue  # untied (`tie_word_embeddings=False`): the head has its own tensor in the file
        for key in [k for k in missing if k == target or k.endswith("." + target)]:
            if key[: -len(target)] + source not in missing:
                missing.remove(key)


class CustomLMPreTrainedModel(PreTrainedModel):
    config_class = CustomLMConfig
    config: CustomLMConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CustomLMDecoderLayer"]
    _skip_keys_device_placement = ["cache"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True

    def _init_weights(self, module: nn.Module):
        """Normal(0, initializer_range) (the base class), then `o_proj` and `down_proj` by 1/sqrt(2 * layers), per
        GPT-2: each of the 2L residual branches adds variance, so the stream's scale stays independent of depth;
        with `zero_init_residual`, zero."""
        super()._init_weights(module)
        if getattr(module, "is_residual_projection", False):
            std = self.config.initializer_range / math.sqrt(2 * self.config.num_hidden_layers)
            init.zeros_(module.weight) if self.config.zero_init_residual else init.normal_(module.weight, 0.0, std)


class CustomLMModel(CustomLMPreTrainedModel):
    """Embeddings, the decoder stack and the final norm; returns hidden states (B, T, D). As in Llama, the
    `output_*` flags and `return_dict` come in `kwargs`, and `past_key_values=` is `cache=` with a warning."""

    def __init__(self, config: CustomLMConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        if config.position_embedding_type == "learned":
            self.embed_positions = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        elif config.position_embedding_type == "rope":
            self.rotary_emb = CustomLMRotaryEmbedding(config)
        self.dropout = build_dropout(config.hidden_dropout)
        self.layers = nn.ModuleList([CustomLMDecoderLayer(config, idx) for idx in range(config.num_hidden_layers)])
        self.norm = build_norm(config)
        self.gradient_checkpointing = False
        self.post_init()

    def _embed_positions(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor):
        """Returns (embeddings with additive positions, rotary (cos, sin) or None)."""
        if self.config.position_embedding_type == "rope":
            return inputs_embeds, self.rotary_emb(inputs_embeds, position_ids)
        if self.config.position_embedding_type == "sinusoidal":
            table = sinusoidal_position_embeddings(position_ids, self.config.hidden_size)
            return inputs_embeds + table.to(inputs_embeds.dtype), None
        # Left-padding positions are -1 under generate(); they are masked out, so any row will do.
        return inputs_embeds + self.embed_positions(position_ids.clamp(min=0)), None

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None, cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None, use_cache: bool | None = None, **kwargs,
    ) -> BaseModelOutputWithPast | tuple:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        return_dict = kwargs.pop("return_dict", None)
        output_attentions = kwargs.get("output_attentions", self.config.output_attentions)
        output_hidden_states = kwargs.get("output_hidden_states", self.config.output_hidden_states)
        use_cache = (self.config.use_cache and not self.training) if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)  # Llama's; `generate` gives its own in-place layers
        past_seen_tokens = cache.get_seq_length() if cache is not None else 0
        batch_size, seq_length = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        if position_ids is None:
            position_ids = (torch.arange(seq_length, device=self.embed_tokens.weight.device) + past_seen_tokens)[None]
        if not torch.compiler.is_compiling():  # data-dependent checks would break the graph
            mask_shape = (batch_size, past_seen_tokens + seq_length)
            check_inputs(self.config, input_ids, attention_mask, position_ids, mask_shape)

        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (B, T, D)
        # None when there is no padding (sdpa then uses is_causal); else a (B, 1, T, S) mask.
        causal_mask = create_causal_mask(
            config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask, cache=cache,
            position_ids=position_ids,
        )
        hidden_states, position_embeddings = self._embed_positions(inputs_embeds, position_ids)
        hidden_states = self.dropout(hidden_states)

        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for decoder_layer in self.layers:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            # position_ids ride to the attention function, as in Llama: flash attention finds packed documents there
            hidden_states, attn_weights = decoder_layer(
                hidden_states, attention_mask=causal_mask, position_ids=position_ids,
                position_embeddings=position_embeddings, cache=cache, **kwargs,
            )
            if output_attentions and attn_weights is not None:  # None from sdpa, as in Llama: ()
                all_attentions += (attn_weights,)
        hidden_states = self.norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)

        output = BaseModelOutputWithPast(
            last_hidden_state=hidden_states, cache=cache if use_cache else None, hidden_states=all_hidden_states,
            attentions=all_attentions,
        )
        return output if return_dict is not False else output.to_tuple()


def head_output(output_class, outputs: BaseModelOutputWithPast, return_dict: bool | None, **fields):
    """A head's `output_class` with the decoder's hidden states, attentions and cache (where the class has one);
    a tuple when `return_dict` is False."""
    if "cache" in output_class.__dataclass_fields__:
        fields["cache"] = outputs.cache
    output = output_class(hidden_states=outputs.hidden_states, attentions=outputs.attentions, **fields)
    return output if return_dict is not False else output.to_tuple()


class CustomLMForCausalLM(CustomLMPreTrainedModel, GrowingCacheGenerationMixin):  # GenerationMixin, see its file
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}
    # Set while training to estimate the fused loss by a sampled softmax (`linear_cross_entropy`'s
    # `candidate_sampler`; hf_custom_lm.training.sampled_softmax); None: the full softmax. Not saved.
    loss_candidate_sampler = None

    def __init__(self, config: CustomLMConfig):
        super().__init__(config)
        self.model = CustomLMModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        self.register_load_state_dict_post_hook(tied_weights_loaded)

    def _can_fuse_loss(self, logits_to_keep: int | torch.Tensor) -> bool:
        """The fused loss reads `lm_head.weight` directly: only with `config.fused_loss`, the plain head (not an
        adapter's or a quantised one), the default loss, and every position projected."""
        head, default_loss = self.lm_head, self.loss_function is LOSS_MAPPING["ForCausalLM"]
        plain_head = type(head) is nn.Linear and head.bias is None and default_loss
        return self.config.fused_loss and plain_head and isinstance(logits_to_keep, int) and logits_to_keep == 0

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None, cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
        use_cache: bool | None = None, logits_to_keep: int | torch.Tensor = 0, **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        r"""`labels` (B, T): the input ids (shifted in the loss), -100 ignored. `logits_to_keep`: project only the
        last N positions (or the given indices). In training mode with `labels` and `config.fused_loss` the loss is
        fused with the projection and never builds the (B, T, V) logits, so `logits` is None."""
        return_dict = kwargs.pop("return_dict", None)
        outputs = self.model(
            input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
            inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        loss = logits = None
        if labels is not None and self.training and self._can_fuse_loss(logits_to_keep):
            loss = linear_cross_entropy(
                hidden_states, self.lm_head.weight, labels, candidate_sampler=self.loss_candidate_sampler, **kwargs
            )
        else:
            slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            logits = self.lm_head(hidden_states[:, slice_indices, :])  # (B, T', V)
            if labels is not None:
                loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)

        return head_output(CausalLMOutputWithPast, outputs, return_dict, loss=loss, logits=logits)


class CustomLMForSequenceClassification(CustomLMPreTrainedModel):
    """The decoder plus a linear `score` head read at each row's last real token (left or right padding)."""

    def __init__(self, config: CustomLMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = CustomLMModel(config)
        self.score = nn.Linear(config.hidden_size, self.num_labels, bias=False)
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None, cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None, labels: torch.LongTensor | None = None,
        use_cache: bool | None = None, **kwargs,
    ) -> SequenceClassifierOutputWithPast | tuple:
        return_dict = kwargs.pop("return_dict", None)
        outputs = self.model(
            input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
            inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs,
        )
        logits = self.score(outputs.last_hidden_state)  # (B, T, num_labels)
        batch_size, seq_len = logits.shape[:2]

        # Index of the rightmost real token per row: from the attention mask if given, else from the pad id.
        if attention_mask is None and input_ids is not None and self.config.pad_token_id is not None:
            attention_mask = input_ids != self.config.pad_token_id
        real = torch.ones(batch_size, seq_len) if attention_mask is None else attention_mask
        positions = torch.arange(seq_len, device=logits.device, dtype=torch.int32)
        last_token = (positions * real.to(logits.device, torch.int32)).argmax(-1)
        pooled_logits = logits[torch.arange(batch_size, device=logits.device), last_token]  # (B, num_labels)

        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, pooled_logits=pooled_logits, config=self.config)

        return head_output(SequenceClassifierOutputWithPast, outputs, return_dict, loss=loss, logits=pooled_logits)


class CustomLMForQuestionAnswering(CustomLMPreTrainedModel):
    """The decoder plus a linear `qa_outputs` head: start and end logits (B, T) of an extractive answer span."""

    def __init__(self, config: CustomLMConfig):
        super().__init__(config)
        self.model = CustomLMModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self, input_ids: torch.LongTensor | None = None, attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None, cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None, start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None, **kwargs,
    ) -> QuestionAnsweringModelOutput | tuple:
        r"""`start_positions` / `end_positions` (B,): token indices of the answer's first and last token; the
        loss is the mean of the two cross-entropies over positions (indices past the sequence are ignored)."""
        return_dict = kwargs.pop("return_dict", None)
        outputs = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                             inputs_embeds=inputs_embeds, **kwargs)
        start_logits, end_logits = (t.contiguous() for t in self.qa_outputs(outputs.last_hidden_state).unbind(-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = self.loss_function(start_logits, end_logits, start_positions, end_positions, **kwargs)
        return head_output(QuestionAnsweringModelOutput, outputs, return_dict, loss=loss, start_logits=start_logits,
                           end_logits=end_logits)


class CustomLMForTokenClassification(CustomLMPreTrainedModel):
    """The decoder plus dropout and a linear `score` head: one label distribution per token (B, T, num_labels).
    Each token sees only its left context (the decoder is causal), as in Llama's head."""

    def __init__(self, config: CustomLMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = CustomLMModel(config)
        dropout = getattr(config, "classifier_dropout", None)
        self.dropout = nn.Dropout(config.hidden_dropout if dropout is None else dropout)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> TokenClassifierOutput | tuple:
        r"""`labels` (B, T): a label id per token, -100 where no label applies (padding, inner sub-words)."""
        return_dict = kwargs.pop("return_dict", None)
        outputs = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                             inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs)
        logits = self.score(self.dropout(outputs.last_hidden_state))  # (B, T, num_labels)
        loss = self.loss_function(logits, labels, self.config) if labels is not None else None
        return head_output(TokenClassifierOutput, outputs, return_dict, loss=loss, logits=logits)


__all__ = [
    "CustomLMPreTrainedModel",
    "CustomLMModel",
    "CustomLMForCausalLM",
    "CustomLMForSequenceClassification",
    "CustomLMForQuestionAnswering",
    "CustomLMForTokenClassification",
]
