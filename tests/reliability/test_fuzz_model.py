"""Fuzzed forward/generate arguments: a valid result or a documented ValueError, nothing else."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_custom_lm import CustomLMForCausalLM

from ..conftest import tiny_config

VOCAB = 512
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {kind: CustomLMForCausalLM(tiny_config(position_embedding_type=kind)).eval()
            for kind in ("rope", "learned")}


@st.composite
def batches(draw):
    batch = draw(st.integers(1, 3))
    length = draw(st.integers(1, 140))
    ids = draw(st.lists(st.integers(-3, VOCAB + 3), min_size=batch * length, max_size=batch * length))
    pads = draw(st.lists(st.integers(0, length - 1), min_size=batch, max_size=batch))
    return torch.tensor(ids).view(batch, length), pads


@SETTINGS
@given(data=batches(), kind=st.sampled_from(["rope", "learned"]))
def test_forward_gives_finite_logits_or_a_value_error(models, data, kind):
    ids, pads = data
    mask = torch.ones_like(ids)
    for row, pad in enumerate(pads):
        mask[row, :pad] = 0
    in_vocab = bool(((ids >= 0) & (ids < VOCAB)).all())
    fits = kind == "rope" or ids.shape[1] <= 128
    with torch.no_grad():
        if in_vocab and fits:
            logits = models[kind](ids, attention_mask=mask).logits
            assert logits.shape == (*ids.shape, VOCAB) and torch.isfinite(logits).all()
        else:
            with pytest.raises(ValueError, match="input_ids|max_position_embeddings"):
                models[kind](ids, attention_mask=mask)


@SETTINGS
@given(prompt_len=st.integers(1, 8), new=st.integers(1, 12), sample=st.booleans(), beams=st.sampled_from([1, 2]))
def test_generate_respects_max_new_tokens(models, prompt_len, new, sample, beams):
    prompt = torch.randint(2, VOCAB, (1, prompt_len))
    out = models["rope"].generate(prompt, max_new_tokens=new, do_sample=sample, num_beams=beams,
                                  pad_token_id=1, eos_token_id=None)
    assert out.shape == (1, prompt_len + new) and torch.equal(out[:, :prompt_len], prompt)


def test_generate_past_the_learned_table_says_what_to_lower(models):
    with pytest.raises(ValueError, match="max_new_tokens"):
        models["learned"].generate(torch.randint(2, VOCAB, (1, 120)), max_new_tokens=20, pad_token_id=1)


def test_float_input_ids_and_mismatched_masks_are_clear_errors(models):
    model = models["rope"]
    with pytest.raises(RuntimeError, match="'indices' to have one of the following scalar types: Long, Int"):
        model(torch.rand(1, 4))  # torch's embedding refuses them, as in Llama
    with pytest.raises(ValueError, match=r"`attention_mask` has shape \(1, 5\) but the input needs \(1, 3\)"):
        model(torch.tensor([[5, 6, 7]]), attention_mask=torch.ones(1, 5, dtype=torch.long))
