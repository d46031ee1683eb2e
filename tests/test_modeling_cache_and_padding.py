"""KV cache, left padding and the attention backends give the same numbers as the plain computation."""

import pytest
import torch

from hf_custom_lm import CustomLMForCausalLM

from .conftest import tiny_config

SWITCHES = [
    dict(),
    dict(position_embedding_type="sinusoidal", norm_type="layernorm", mlp_type="plain", hidden_act="gelu"),
    dict(position_embedding_type="learned"),
]


def model_for(seed=0, **overrides):
    torch.manual_seed(seed)
    return CustomLMForCausalLM(tiny_config(**overrides)).eval()


@pytest.mark.parametrize("overrides", SWITCHES, ids=["rope", "classic", "learned"])
def test_greedy_generate_is_the_same_with_and_without_cache(overrides):
    model = model_for(**overrides)
    prompt = torch.randint(2, 512, (2, 5))
    kwargs = dict(max_new_tokens=10, do_sample=False, pad_token_id=1, eos_token_id=None)
    with_cache = model.generate(prompt, use_cache=True, **kwargs)
    without_cache = model.generate(prompt, use_cache=False, **kwargs)
    assert torch.equal(with_cache, without_cache)


def test_continuing_from_a_returned_cache_equals_one_longer_call():
    model = model_for()
    ids = torch.randint(2, 512, (2, 12))
    with torch.no_grad():
        full = model(ids).logits
        first = model(ids[:, :7], use_cache=True)
        rest = model(ids[:, 7:], cache=first.cache, use_cache=True)
    assert first.cache.get_seq_length() == 12  # the cache object was extended in place
    torch.testing.assert_close(torch.cat([first.logits, rest.logits], dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("overrides", SWITCHES, ids=["rope", "classic", "learned"])
def test_left_padded_batch_matches_each_row_alone(overrides):
    model = model_for(**overrides)
    rows = [torch.randint(2, 512, (n,)) for n in (7, 6, 4, 3, 1)]  # 0..6 left pads
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), 1)
    attention_mask = torch.zeros_like(input_ids)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row):] = row
        attention_mask[i, width - len(row):] = 1
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=1, eos_token_id=None)

    # generate() derives position ids from the mask; do the same for the single forward pass.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        batched_last = model(input_ids, attention_mask=attention_mask, position_ids=position_ids).logits[:, -1]
    batched_new = model.generate(input_ids, attention_mask=attention_mask, **kwargs)[:, width:]
    for i, row in enumerate(rows):
        with torch.no_grad():
            alone_last = model(row[None]).logits[0, -1]
        torch.testing.assert_close(batched_last[i], alone_last, atol=1e-4, rtol=0)
        alone_new = model.generate(row[None], **kwargs)[0, len(row):]
        assert torch.equal(batched_new[i], alone_new), f"row {i} continued differently when padded"


@pytest.mark.parametrize("padded", [False, True])
def test_eager_and_sdpa_agree(padded):
    model = model_for()
    ids = torch.randint(2, 512, (3, 11))
    mask = torch.ones_like(ids)
    if padded:
        mask[0, :3] = 0
        mask[2, :7] = 0
    with torch.no_grad():
        model.set_attn_implementation("sdpa")
        sdpa = model(ids, attention_mask=mask).logits
        model.set_attn_implementation("eager")
        eager = model(ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(sdpa[real], eager[real], atol=1e-5, rtol=0)


def test_flex_attention_agrees_with_eager():
    model = model_for()
    ids = torch.randint(2, 512, (2, 16))
    with torch.no_grad():
        model.set_attn_implementation("eager")
        eager = model(ids).logits
        model.set_attn_implementation("flex_attention")
        flex = model(ids).logits
    torch.testing.assert_close(flex, eager, atol=1e-4, rtol=0)


@pytest.mark.parametrize("overrides", SWITCHES, ids=["rope", "classic", "learned"])
def test_changing_a_future_token_leaves_earlier_logits_unchanged(overrides):
    model = model_for(**overrides)
    ids = torch.randint(2, 512, (1, 10))
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % 512
    with torch.no_grad():
        a = model(ids).logits
        b = model(changed).logits
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=0, rtol=0)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_static_cache_generation_matches_dynamic():
    model = model_for()
    prompt = torch.randint(2, 512, (2, 5))
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=1, eos_token_id=None)
    dynamic = model.generate(prompt, **kwargs)
    static = model.generate(prompt, cache_implementation="static", **kwargs)
    assert torch.equal(dynamic, static)


def test_beam_search_and_sampling_run_and_sampling_is_seeded():
    model = model_for()
    prompt = torch.randint(2, 512, (1, 4))
    beams = model.generate(prompt, num_beams=3, num_return_sequences=2, max_new_tokens=5, pad_token_id=1,
                           eos_token_id=None)
    assert beams.shape == (2, 9)
    torch.manual_seed(1)
    a = model.generate(prompt, do_sample=True, top_k=20, temperature=0.8, max_new_tokens=6, pad_token_id=1)
    torch.manual_seed(1)
    b = model.generate(prompt, do_sample=True, top_k=20, temperature=0.8, max_new_tokens=6, pad_token_id=1)
    assert torch.equal(a, b)
