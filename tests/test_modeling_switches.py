"""Every architecture switch builds, learns a repeated batch, and survives a save/load."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM

from .conftest import tiny_config

SWITCHES = {
    "llama": dict(),
    "sinusoidal": dict(position_embedding_type="sinusoidal"),
    "learned": dict(position_embedding_type="learned"),
    "layernorm": dict(norm_type="layernorm"),
    "plain-relu": dict(mlp_type="plain", hidden_act="relu"),
    "plain-gelu": dict(mlp_type="plain", hidden_act="gelu"),
    "mha": dict(num_key_value_heads=4),
    "mqa": dict(num_key_value_heads=1),
    "untied-bias-dropout": dict(tie_word_embeddings=False, attention_bias=True, mlp_bias=True,
                                attention_dropout=0.1, hidden_dropout=0.1),
}


@pytest.mark.parametrize("overrides", SWITCHES.values(), ids=SWITCHES.keys())
def test_switch_trains_and_round_trips(overrides, tmp_path):
    torch.manual_seed(0)
    model = CustomLMForCausalLM(tiny_config(**overrides))
    batch = torch.randint(2, 512, (4, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model(batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5, losses

    model.eval().save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    for key, value in overrides.items():
        assert getattr(loaded.config, key) == value
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch).logits, model(batch).logits, atol=1e-5, rtol=0)


def test_switches_change_the_modules():
    plain = CustomLMForCausalLM(tiny_config(mlp_type="plain", hidden_act="gelu", norm_type="layernorm"))
    names = {n for n, _ in plain.named_parameters()}
    assert "model.layers.0.mlp.gate_proj.weight" not in names
    assert "model.layers.0.input_layernorm.bias" in names
    learned = CustomLMForCausalLM(tiny_config(position_embedding_type="learned"))
    assert learned.model.embed_positions.weight.shape == (128, 64)
    sinusoidal = CustomLMForCausalLM(tiny_config(position_embedding_type="sinusoidal"))
    assert not hasattr(sinusoidal.model, "rotary_emb") and not hasattr(sinusoidal.model, "embed_positions")


def test_classic_preset_is_the_seed_transformer():
    config = CustomLMConfig.from_preset("classic")
    assert (config.position_embedding_type, config.norm_type, config.mlp_type) == ("sinusoidal", "layernorm", "plain")
    assert config.hidden_act in ("relu", "gelu") and config.hidden_dropout > 0 and config.attention_dropout > 0


def test_residual_projections_get_scaled_init():
    torch.manual_seed(0)
    config = CustomLMConfig.from_preset("small", num_hidden_layers=8)
    model = CustomLMForCausalLM(config)
    layer = model.model.layers[0]
    expected = config.initializer_range / (2 * config.num_hidden_layers) ** 0.5
    assert abs(layer.self_attn.o_proj.weight.std().item() - expected) < 0.1 * expected
    assert abs(layer.mlp.down_proj.weight.std().item() - expected) < 0.1 * expected
    assert abs(layer.self_attn.q_proj.weight.std().item() - config.initializer_range) < 0.1 * config.initializer_range
