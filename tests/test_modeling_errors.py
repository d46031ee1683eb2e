"""Bad configs and bad inputs fail with a ValueError that names the problem."""

import pytest
import torch

from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM

from .conftest import tiny_config

BAD_CONFIGS = [
    (dict(hidden_size=100, num_attention_heads=3), "num_attention_heads"),
    (dict(num_attention_heads=4, num_key_value_heads=3), "num_key_value_heads"),
    (dict(position_embedding_type="alibi"), "position_embedding_type"),
    (dict(norm_type="batchnorm"), "norm_type"),
    (dict(mlp_type="moe"), "mlp_type"),
    (dict(hidden_act="swish2"), "hidden_act"),
    (dict(num_hidden_layers=0), "num_hidden_layers"),
    (dict(vocab_size=-5), "vocab_size"),
    (dict(intermediate_size=0), "intermediate_size"),
    (dict(eos_token_id=8192), "eos_token_id"),
    (dict(pad_token_id=-1), "pad_token_id"),
    (dict(hidden_dropout=1.5), "hidden_dropout"),
]


@pytest.mark.parametrize("overrides,field", BAD_CONFIGS, ids=[f for _, f in BAD_CONFIGS])
def test_invalid_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field) as info:
        CustomLMConfig(**overrides)
    bad_value = next(iter(overrides.values())) if field in overrides else None
    if bad_value is not None:
        assert str(bad_value) in str(info.value)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="tiny"):
        CustomLMConfig.from_preset("huge")


@pytest.mark.parametrize("bad_id", [512, 10_000, -1])
def test_out_of_range_token_ids_are_refused(bad_id):
    model = CustomLMForCausalLM(tiny_config())
    with pytest.raises(ValueError, match=r"input_ids.*\[0, 512\)"):
        model(torch.tensor([[5, bad_id, 7]]))


def test_exactly_one_of_input_ids_and_inputs_embeds():
    model = CustomLMForCausalLM(tiny_config())
    ids = torch.tensor([[5, 6]])
    with pytest.raises(ValueError, match="exactly one"):
        model()
    with pytest.raises(ValueError, match="exactly one"):
        model(input_ids=ids, inputs_embeds=model.get_input_embeddings()(ids))


def test_learned_positions_refuse_sequences_past_the_table():
    model = CustomLMForCausalLM(tiny_config(position_embedding_type="learned"))
    model(torch.randint(2, 512, (1, 128)))  # exactly the table: fine
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.randint(2, 512, (1, 129)))


@pytest.mark.parametrize("kind", ["rope", "sinusoidal"])
def test_rope_and_sinusoidal_run_past_max_position_embeddings(kind):
    """Documented behaviour: computed positions extrapolate (quality beyond training length is not promised)."""
    model = CustomLMForCausalLM(tiny_config(position_embedding_type=kind)).eval()
    with torch.no_grad():
        logits = model(torch.randint(2, 512, (1, 200))).logits
    assert logits.shape == (1, 200, 512) and torch.isfinite(logits).all()
