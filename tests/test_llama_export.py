"""Plain-Llama export (`format="llama"`) and the reverse `from_llama`: same logits, clear refusals."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from hf_custom_lm import CustomLMForCausalLM
from hf_custom_lm.hub import export
from hf_custom_lm.hub.llama import from_llama, to_llama

from .builders import tiny_model


def logits(model, input_ids):
    with torch.no_grad():
        return model(input_ids).logits


@pytest.mark.parametrize("overrides", [{}, {"tie_word_embeddings": False, "attention_bias": True},
                                       {"hidden_dropout": 0.1, "num_key_value_heads": 4}])
def test_llama_export_has_no_custom_code_and_same_logits(tmp_path, tokenizer, overrides):
    model = tiny_model(tokenizer, **overrides)
    folder = export(model, tokenizer, tmp_path / "llama", format="llama")

    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    assert "auto_map" not in config and not list(folder.glob("*.py"))
    llama = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    assert type(llama) is LlamaForCausalLM
    assert llama.generation_config.eos_token_id == model.config.eos_token_id
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    assert (logits(llama, ids) - logits(model, ids)).abs().max() <= 1e-5
    text = "Once upon a time"
    assert AutoTokenizer.from_pretrained(folder)(text).input_ids == tokenizer(text).input_ids


@pytest.mark.parametrize("setting, value", [
    ("position_embedding_type", "sinusoidal"), ("position_embedding_type", "learned"),
    ("norm_type", "layernorm"), ("mlp_type", "plain"), ("hidden_act", "gelu"),
])
def test_llama_export_refuses_incompatible_settings(tmp_path, tokenizer, setting, value):
    model = tiny_model(tokenizer, **{setting: value})
    with pytest.raises(ValueError, match=f"`{setting}={value!r}`"):
        export(model, tokenizer, tmp_path / "llama", format="llama")
    assert not (tmp_path / "llama").exists()  # refused before anything was written


@pytest.mark.parametrize("tie", [True, False])
def test_from_llama_folder_and_object_give_same_logits(tmp_path, tie):
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=tie, pad_token_id=1,
        bos_token_id=0, eos_token_id=0, rms_norm_eps=1e-5,
    )).eval()
    llama.save_pretrained(tmp_path / "llama")
    ids = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))

    for source in (tmp_path / "llama", llama):
        model = from_llama(source)
        assert type(model) is CustomLMForCausalLM
        assert model.config.rms_norm_eps == 1e-5 and model.config.tie_word_embeddings == tie
        assert (model.lm_head.weight is model.model.embed_tokens.weight) == tie
        assert (logits(model, ids) - logits(llama, ids)).abs().max() <= 1e-5
    # and back again: the round trip is the identity on the state dict
    back = to_llama(model).state_dict()
    assert all(torch.equal(back[name], tensor) for name, tensor in llama.state_dict().items())


def test_from_llama_refuses_what_custom_lm_cannot_express():
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        hidden_act="tanh", pad_token_id=1, bos_token_id=0, eos_token_id=0,
    ))
    with pytest.raises(ValueError, match="hidden_act"):
        from_llama(llama)
    with pytest.raises(TypeError, match="LlamaForCausalLM"):
        from_llama(torch.nn.Linear(2, 2))
