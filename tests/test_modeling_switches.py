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
    "plain-relu2": dict(mlp_type="plain", hidden_act="relu2"),
    "mha": dict(num_key_value_heads=4),
    "mqa": dict(num_key_value_heads=1),
    "untied-bias-dropout": dict(tie_word_embeddings=False, attention_bias=True, mlp_bias=True,
                                attention_dropout=0.1, hidden_dropout=0.1),
    "zero-init-residual": dict(zero_init_residual=True),
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


def test_classic_preset_builds_the_seed_transformer():
    """LayerNorm with bias, no rotary and no position table (sinusoidal), a two-layer GELU MLP, and dropout that
    acts in training only."""
    torch.manual_seed(0)
    model = CustomLMForCausalLM(CustomLMConfig.from_preset("classic", vocab_size=512))
    layers = model.model.layers
    norms = [model.model.norm] + [n for layer in layers for n in (layer.input_layernorm, layer.post_attention_layernorm)]
    assert all(isinstance(n, torch.nn.LayerNorm) and n.bias is not None for n in norms)
    assert not hasattr(model.model, "rotary_emb") and not hasattr(model.model, "embed_positions")
    mlp = layers[0].mlp
    assert not hasattr(mlp, "gate_proj")
    x = torch.randn(2, 5, model.config.hidden_size)
    torch.testing.assert_close(mlp(x), mlp.down_proj(torch.nn.functional.gelu(mlp.up_proj(x))))
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())

    input_ids = torch.randint(2, 512, (2, 12))
    model.train()
    with torch.no_grad():
        train_a, train_b = model(input_ids).logits, model(input_ids).logits
        eval_a, eval_b = model.eval()(input_ids).logits, model(input_ids).logits
    assert not torch.allclose(train_a, train_b)  # a fresh dropout mask each call
    torch.testing.assert_close(eval_a, eval_b)
    assert not torch.allclose(train_a, eval_a)


def test_residual_projections_get_scaled_init():
    torch.manual_seed(0)
    config = CustomLMConfig.from_preset("small", num_hidden_layers=8)
    model = CustomLMForCausalLM(config)
    layer = model.model.layers[0]
    expected = config.initializer_range / (2 * config.num_hidden_layers) ** 0.5
    assert abs(layer.self_attn.o_proj.weight.std().item() - expected) < 0.1 * expected
    assert abs(layer.mlp.down_proj.weight.std().item() - expected) < 0.1 * expected
    assert abs(layer.self_attn.q_proj.weight.std().item() - config.initializer_range) < 0.1 * config.initializer_range


def test_zero_init_residual_starts_every_layer_as_the_identity():
    torch.manual_seed(0)
    model = CustomLMForCausalLM(tiny_config(zero_init_residual=True)).eval()
    for layer in model.model.layers:
        assert layer.self_attn.o_proj.weight.count_nonzero() == 0 and layer.mlp.down_proj.weight.count_nonzero() == 0
        assert layer.self_attn.q_proj.weight.std() > 0 and layer.mlp.up_proj.weight.std() > 0
    ids = torch.randint(2, 512, (2, 8))
    with torch.no_grad():  # the logits are the embeddings through the final norm and the tied head alone
        expected = model.model.norm(model.model.embed_tokens(ids)) @ model.model.embed_tokens.weight.T
        torch.testing.assert_close(model(ids).logits, expected)
