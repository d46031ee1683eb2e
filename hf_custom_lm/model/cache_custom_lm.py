"""The dynamic key/value cache of CustomLM: transformers' `DynamicCache`, whose layers append in place.

transformers' `DynamicLayer` appends a decoding step's keys and values with `torch.cat`, which copies the
whole cache of every layer at every step: O(S) work per token. `GrowingDynamicLayer` keeps keys and values in a buffer with spare room
along the sequence axis and copies only the new tokens into it; the buffer grows by a quarter (at least
`MIN_SPARE_TOKENS`) when full, so appending is amortised O(1). The first tokens' tensors are kept as they
come (not copied, where `torch.cat` would copy them; no spare room), so a forward that never decodes
costs no more than with `DynamicLayer`. `keys` and `values` remain tensors of shape
(B, Hkv, S, hd), views of the filled part of the buffer, so every reader of a `DynamicLayer` (masks,
`crop`, beam search reordering, offloading, legacy tuples) works unchanged; whoever replaces `keys`
(crop, reorder, offload) makes the next update start a new buffer from the replacement. Under
`torch.compile`, and when the keys need gradients, it concatenates like `DynamicLayer`.

`GrowingCacheGenerationMixin` gives `generate`'s own default dynamic cache these layers; a forward called
without a cache gets transformers' plain `DynamicCache`, as Llama does, so its output (and a `torch.export`ed
program's) has Llama's structure.

This file is copied to the Hub next to `modeling_custom_lm.py`, which imports it; it imports only torch
and transformers.
"""

import torch
from transformers import PreTrainedConfig
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.generation import GenerationMixin

# Spare room, in tokens, given to a buffer when it is (re)allocated: a quarter of its length, at least this.
MIN_SPARE_TOKENS = 256


class GrowingDynamicLayer(DynamicLayer):
    """A `DynamicLayer` that writes new tokens into spare room instead of concatenating."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._key_buffer = self._value_buffer = None  # (B, Hkv, capacity, hd)

    def _owns_keys(self, new_length: int) -> bool:
        """Whether `keys`/`values` are still the views of our buffers and there is room for `new_length`."""
        buffer = self._key_buffer
        return (
            buffer is not None
            and self.keys is self._key_view
            and self.values is self._value_view
            and buffer.shape[-2] >= new_length
        )

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Concatenate, as DynamicLayer does, when writing in place would break the backward pass (autograd
        # saved the cached tensors) and under torch.compile (inductor cannot compile a buffer whose capacity
        # is symbolic: "Expected !size_bytes_is_heap_allocated_").
        if key_states.requires_grad or value_states.requires_grad or torch.compiler.is_compiling():
            self._key_buffer = self._value_buffer = None
            return super().update(key_states, value_states, *args, **kwargs)
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        new_length = length + key_states.shape[-2]
        if length == 0:
            # The first tokens (a prompt, or a forward that never decodes: evaluation) are kept as given, with
            # no copy and no spare room; room comes with the first append.
            self._key_buffer, self._value_buffer = key_states, value_states
        else:
            if not self._owns_keys(new_length):
                capacity = new_length + max(MIN_SPARE_TOKENS, new_length // 4)
                self._key_buffer = self._grow(self.keys, key_states, length, capacity)
                self._value_buffer = self._grow(self.values, value_states, length, capacity)
            self._key_buffer[:, :, length:new_length].copy_(key_states)
            self._value_buffer[:, :, length:new_length].copy_(value_states)
        self.keys = self._key_view = self._key_buffer[:, :, :new_length]
        self.values = self._value_view = self._value_buffer[:, :, :new_length]
        return self.keys, self.values

    @staticmethod
    def _grow(cached: torch.Tensor, new: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
        """A (B, Hkv, capacity, hd) buffer holding the `length` cached tokens; the new ones set its shape."""
        if length and cached.shape[:2] + cached.shape[3:] != new.shape[:2] + new.shape[3:]:
            raise ValueError(
                f"Cannot append keys/values of shape {tuple(new.shape)} to a cache holding {tuple(cached.shape)}: "
                "batch size, heads and head size must match. Start a new cache for a new batch."
            )
        buffer = new.new_empty(*new.shape[:2], capacity, new.shape[3])
        if length:
            buffer[:, :, :length].copy_(cached)
        return buffer

    def reset(self) -> None:
        self._key_buffer = self._value_buffer = None
        super().reset()


def use_growing_layers(cache: DynamicCache) -> DynamicCache:
    """Give an empty `DynamicCache` `GrowingDynamicLayer`s in place of its plain layers (sliding-window
    layers, which CustomLM does not have, stay as they are). Returns the same cache."""
    cache.layers = [
        GrowingDynamicLayer() if type(layer) is DynamicLayer and not layer.is_initialized else layer
        for layer in cache.layers
    ]
    return cache


def growing_dynamic_cache(config: PreTrainedConfig) -> DynamicCache:
    """A new `DynamicCache` for `config` with `GrowingDynamicLayer`s."""
    return use_growing_layers(DynamicCache(config=config))


class GrowingCacheGenerationMixin(GenerationMixin):
    """`GenerationMixin` whose own choice of cache, when that is the default dynamic cache, gets
    `GrowingDynamicLayer`s, which append in place instead of concatenating the whole cache at every step. A
    cache passed by the caller, static caches and offloaded caches are left as they are."""

    def _prepare_cache_for_generation(self, generation_config, model_kwargs: dict, *args, **kwargs):
        user_cache = model_kwargs.get("cache")
        result = super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)
        cache = model_kwargs.get("cache")
        if user_cache is None and type(cache) is DynamicCache and not cache.offloading:
            use_growing_layers(cache)
        return result
