"""The in-place growing dynamic cache holds exactly what transformers' concatenating `DynamicLayer` holds,
through every operation `generate` applies to a cache, and is what `generate` uses by default."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import DynamicCache, StaticCache
from transformers.cache_utils import DynamicLayer

from hf_custom_lm import CustomLMForCausalLM
from hf_custom_lm.model.cache_custom_lm import MIN_SPARE_TOKENS, GrowingDynamicLayer, growing_dynamic_cache

from .conftest import tiny_config

# One operation on a cache layer: append n tokens, crop n tokens, keep a subset of the batch, repeat the batch.
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("update"), st.integers(1, 300)),
        st.tuples(st.just("crop"), st.integers(1, 40)),
        st.tuples(st.just("select"), st.just(0)),
        st.tuples(st.just("repeat"), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


def model_for(seed=0, **overrides):
    torch.manual_seed(seed)
    return CustomLMForCausalLM(tiny_config(**overrides)).eval()


@settings(max_examples=40, deadline=None)
@given(OPERATIONS)
def test_growing_layer_holds_what_a_concatenating_layer_holds(operations):
    growing, plain = GrowingDynamicLayer(), DynamicLayer()
    generator = torch.Generator().manual_seed(0)
    batch = 2
    for name, n in operations:
        if name == "update":
            keys, values = torch.randn(2, batch, 3, n, 4, generator=generator)  # (B, Hkv, n, hd) each
            got, expected = growing.update(keys, values), plain.update(keys, values)
            for a, b in zip(got, expected):
                assert torch.equal(a, b)
        elif plain.get_seq_length() == 0:
            continue
        elif name == "crop":
            growing.crop(-n), plain.crop(-n)
        elif name == "select" and batch == 2:
            indices = torch.tensor([1])
            growing.batch_select_indices(indices), plain.batch_select_indices(indices)
            batch = 1
        elif name == "repeat" and batch == 1:
            growing.batch_repeat_interleave(2), plain.batch_repeat_interleave(2)
            batch = 2
        assert growing.get_seq_length() == plain.get_seq_length()
        assert torch.equal(growing.keys, plain.keys) and torch.equal(growing.values, plain.values)
        if growing._key_buffer is not None and growing.keys is growing._key_view:
            # spare room stays bounded: a quarter of the length, or MIN_SPARE_TOKENS
            length = growing.get_seq_length()
            assert growing._key_buffer.shape[-2] <= length + max(MIN_SPARE_TOKENS, length // 4)


def test_decoding_steps_append_without_reallocating():
    layer = GrowingDynamicLayer()
    prompt_keys = torch.randn(1, 2, 10, 4)
    keys, _ = layer.update(prompt_keys, torch.randn(1, 2, 10, 4))
    assert keys.data_ptr() == prompt_keys.data_ptr()  # the prompt is kept as given: no copy, no spare room
    layer.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))  # the first append makes the room
    buffer = layer._key_buffer
    assert buffer.shape[-2] == 11 + MIN_SPARE_TOKENS
    for _ in range(MIN_SPARE_TOKENS):
        keys, _ = layer.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))
        assert keys.data_ptr() == buffer.data_ptr()  # written into the spare room, nothing copied
    assert layer.get_seq_length() == 11 + MIN_SPARE_TOKENS
    layer.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4))  # room exhausted: one larger buffer
    assert layer._key_buffer is not buffer and layer.get_seq_length() == 12 + MIN_SPARE_TOKENS


def test_keys_that_need_gradients_are_concatenated_not_written_in_place():
    layer = GrowingDynamicLayer()
    first = torch.randn(1, 2, 3, 4, requires_grad=True)
    second = torch.randn(1, 2, 1, 4, requires_grad=True)
    layer.update(first, first * 2)
    keys, values = layer.update(second, second * 2)
    (keys.sum() + values.sum()).backward()  # an in-place write would fail here ("modified by an inplace operation")
    assert torch.equal(first.grad, torch.full_like(first, 3.0)) and torch.equal(second.grad, torch.full_like(second, 3.0))


def test_a_batch_of_another_size_is_refused_by_name():
    layer = GrowingDynamicLayer()
    layer.update(torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4))
    layer.crop(-1)  # the views are no longer the buffer's: the next update builds a new buffer
    with pytest.raises(ValueError, match=r"shape \(3, 2, 1, 4\).*\(2, 2, 2, 4\)"):
        layer.update(torch.randn(3, 2, 1, 4), torch.randn(3, 2, 1, 4))


def test_generate_uses_growing_layers_by_default_and_leaves_other_caches_alone():
    model = model_for()
    prompt = torch.randint(2, 512, (2, 5))
    kwargs = dict(max_new_tokens=4, do_sample=False, pad_token_id=1, eos_token_id=None, return_dict_in_generate=True)
    default = model.generate(prompt, **kwargs)
    assert all(type(layer) is GrowingDynamicLayer for layer in default.cache.layers)
    mine = DynamicCache(config=model.config)
    passed = model.generate(prompt, cache=mine, **kwargs)
    assert passed.cache is mine and all(type(layer) is DynamicLayer for layer in mine.layers)
    static = model.generate(prompt, cache_implementation="static", **kwargs)
    assert isinstance(static.cache, StaticCache)
    assert torch.equal(default.sequences, passed.sequences) and torch.equal(default.sequences, static.sequences)
    with torch.no_grad():  # a forward without a cache gets Llama's plain one (its output structure, e.g. for export)
        assert all(type(layer) is DynamicLayer for layer in model(prompt, use_cache=True).cache.layers)


@pytest.mark.parametrize("generate_kwargs", [dict(), dict(num_beams=3), dict(num_beams=2, num_return_sequences=2)],
                         ids=["greedy", "beams", "beams-return-2"])
def test_generate_gives_the_same_tokens_and_scores_as_the_concatenating_cache(generate_kwargs):
    model = model_for()
    prompt = torch.randint(2, 512, (2, 9))
    mask = torch.ones_like(prompt)
    mask[1, :4] = 0  # left padding in the second row
    kwargs = dict(attention_mask=mask, max_new_tokens=MIN_SPARE_TOKENS // 8, do_sample=False, pad_token_id=1,
                  eos_token_id=None, return_dict_in_generate=True, output_scores=True, **generate_kwargs)
    default = model.generate(prompt, **kwargs)
    plain = model.generate(prompt, cache=DynamicCache(config=model.config), **kwargs)
    assert torch.equal(default.sequences, plain.sequences)
    torch.testing.assert_close(torch.stack(default.scores), torch.stack(plain.scores), atol=1e-5, rtol=0)


def test_a_long_continuation_crosses_buffer_growth_with_the_same_logits():
    model = model_for(max_position_embeddings=1024)
    ids = torch.randint(2, 512, (1, MIN_SPARE_TOKENS + 40))
    cache = growing_dynamic_cache(model.config)
    with torch.no_grad():
        full = model(ids).logits
        steps = [model(ids[:, :30], cache=cache, use_cache=True).logits]
        steps += [model(ids[:, t : t + 1], cache=cache, use_cache=True).logits for t in range(30, ids.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_a_compiled_forward_generates_the_same_tokens():
    # Inductor cannot compile the growing buffer (symbolic capacity): under torch.compile the layers concatenate.
    model = model_for(max_position_embeddings=512)
    prompt = torch.randint(2, 512, (2, 7))
    # past MIN_SPARE_TOKENS: the first buffer would have to grow inside the compiled graph
    kwargs = dict(max_new_tokens=MIN_SPARE_TOKENS + 8, do_sample=False, pad_token_id=1, eos_token_id=None)
    expected = model.generate(prompt, **kwargs)
    torch._dynamo.reset()
    model.forward = torch.compile(model.forward)
    try:
        assert torch.equal(model.generate(prompt, **kwargs), expected)
    finally:
        del model.forward
        torch._dynamo.reset()
