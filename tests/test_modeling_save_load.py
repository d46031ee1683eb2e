"""Save/load through the Auto classes: same logits, safetensors only, ties kept, resize works."""

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM, CustomLMForSequenceClassification, CustomLMModel

from .conftest import tiny_config


def test_auto_classes_resolve_custom_lm(tmp_path):
    config = tiny_config()
    config.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), CustomLMConfig)
    assert type(AutoModel.from_config(config)) is CustomLMModel
    assert type(AutoModelForCausalLM.from_config(config)) is CustomLMForCausalLM
    assert type(AutoModelForSequenceClassification.from_config(config)) is CustomLMForSequenceClassification


def test_round_trip_keeps_logits_and_writes_safetensors_only(tmp_path, seeded):
    model = CustomLMForCausalLM(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "model.safetensors" in files and "generation_config.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(2, 512, (2, 13))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=1e-5, rtol=0)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()


def test_untied_embeddings_round_trip(tmp_path, seeded):
    model = CustomLMForCausalLM(tiny_config(tie_word_embeddings=False))
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert loaded.lm_head.weight.data_ptr() != loaded.model.embed_tokens.weight.data_ptr()


def test_dtype_on_load(tmp_path):
    CustomLMForCausalLM(tiny_config()).save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.dtype == torch.bfloat16
    with torch.no_grad():
        assert loaded(torch.tensor([[5, 6, 7]])).logits.dtype == torch.bfloat16


def test_resize_token_embeddings_keeps_ties_and_old_rows(tmp_path, seeded):
    model = CustomLMForCausalLM(tiny_config())
    old = model.get_input_embeddings().weight[:512].clone()
    model.resize_token_embeddings(600)
    assert model.config.vocab_size == 600
    assert model.get_input_embeddings().weight.shape == (600, 64)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert torch.equal(model.get_input_embeddings().weight[:512], old)
    with torch.no_grad():
        assert model(torch.tensor([[599, 3]])).logits.shape == (1, 2, 600)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.config.vocab_size == 600
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()


def test_classifier_loads_from_a_causal_lm_checkpoint(tmp_path, seeded):
    lm = CustomLMForCausalLM(tiny_config())
    lm.save_pretrained(tmp_path)
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    assert torch.equal(clf.model.embed_tokens.weight, lm.model.embed_tokens.weight)
    assert clf.score.weight.shape == (3, 64)


def test_mismatched_checkpoint_shapes_name_ignore_mismatched_sizes(tmp_path):
    CustomLMForCausalLM(tiny_config()).save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        AutoModelForCausalLM.from_pretrained(tmp_path, hidden_size=128, intermediate_size=256)
