"""Every `rope_type` transformers gives Llama turns into Llama's frequencies and logits, before and past the
trained length (where `dynamic` and `longrope` recompute them); other position types refuse `rope_parameters`."""

import pytest
import torch

from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM
from hf_custom_lm.hub.llama import to_llama

from .conftest import tiny_config
from .test_contract_outputs import classic_tiny_config

HALF_HEAD = 8  # tiny_config: head_dim 16
ROPE_PARAMETERS = {
    "default": dict(rope_type="default", rope_theta=500000.0),
    "linear": dict(rope_type="linear", factor=2.0),
    "dynamic": dict(rope_type="dynamic", factor=2.0),
    "yarn": dict(rope_type="yarn", factor=2.0, original_max_position_embeddings=16),
    "longrope": dict(rope_type="longrope", original_max_position_embeddings=16,
                     short_factor=[1.0 + i / 10 for i in range(HALF_HEAD)],
                     long_factor=[2.0 + i / 4 for i in range(HALF_HEAD)]),
    "llama3": dict(rope_type="llama3", factor=4.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=16),
}


@pytest.mark.parametrize("rope_type", ROPE_PARAMETERS)
def test_rope_type_gives_llamas_frequencies_and_logits(rope_type):
    torch.manual_seed(0)
    config = tiny_config(max_position_embeddings=32, rope_parameters=dict(ROPE_PARAMETERS[rope_type]))
    model = CustomLMForCausalLM(config).eval()
    llama = to_llama(model)
    assert llama.config.rope_parameters == model.config.rope_parameters
    ours, theirs = model.model.rotary_emb, llama.model.rotary_emb
    ids = torch.randint(2, 512, (2, 48))
    # Short, past the trained length (32), and short again: dynamic scaling grows and then resets.
    for length in (12, 48, 12):
        with torch.no_grad():
            our_logits, their_logits = model(ids[:, :length]).logits, llama(ids[:, :length]).logits
        torch.testing.assert_close(ours.inv_freq, theirs.inv_freq, msg=f"{rope_type} at {length} tokens")
        assert ours.attention_scaling == pytest.approx(theirs.attention_scaling)
        torch.testing.assert_close(our_logits, their_logits, atol=1e-5, rtol=0, msg=f"{rope_type} at {length} tokens")


def test_dynamic_rope_rescales_past_the_trained_length():
    """Not only equal to Llama: past `max_position_embeddings` the frequencies really change."""
    model = CustomLMForCausalLM(tiny_config(max_position_embeddings=32, rope_parameters=ROPE_PARAMETERS["dynamic"]))
    before = model.model.rotary_emb.inv_freq.clone()
    with torch.no_grad():
        model.eval()(torch.randint(2, 512, (1, 48)))
    assert not torch.equal(model.model.rotary_emb.inv_freq, before)


def test_greedy_generation_past_the_trained_length_matches_llama_with_dynamic_rope():
    torch.manual_seed(0)
    model = CustomLMForCausalLM(tiny_config(max_position_embeddings=16, rope_parameters=ROPE_PARAMETERS["dynamic"]))
    llama = to_llama(model.eval())
    prompt = torch.randint(2, 512, (1, 12))
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=1, eos_token_id=None)
    assert torch.equal(model.generate(prompt, **kwargs), llama.generate(prompt, **kwargs))


@pytest.mark.parametrize("position_embedding_type", ["sinusoidal", "learned"])
@pytest.mark.parametrize("rope", [dict(rope_parameters=ROPE_PARAMETERS["linear"]), dict(rope_theta=500000.0),
                                  dict(rope_scaling={"rope_type": "dynamic", "factor": 2.0})],
                         ids=["rope_parameters", "rope_theta", "rope_scaling"])
def test_other_position_types_refuse_rope_parameters_by_name(position_embedding_type, rope):
    with pytest.raises(ValueError, match=rf"`rope_parameters`.*'{position_embedding_type}'"):
        tiny_config(position_embedding_type=position_embedding_type, **rope)


def test_classic_refuses_rope_parameters_and_reloads_its_own_saved_config(tmp_path):
    """`PreTrainedConfig` fills in default `rope_parameters` itself; a saved classic config carries them and must
    load again. Only values the user set are refused."""
    with pytest.raises(ValueError, match="rope_parameters"):
        classic_tiny_config(rope_parameters=ROPE_PARAMETERS["yarn"])
    classic_tiny_config().save_pretrained(tmp_path)
    assert CustomLMConfig.from_pretrained(tmp_path).position_embedding_type == "sinusoidal"
