"""A tied head reloads without a false "missing keys" report: `save_pretrained` leaves `lm_head.weight` out of
the file, and the Trainer's `load_best_model_at_end` reads that file with a plain `load_state_dict`."""

import logging

import pytest
import torch
from safetensors.torch import load_file

from .builders import tiny_model, train_tiny_run


def saved_state(model, tmp_path):
    model.save_pretrained(tmp_path)
    return load_file(tmp_path / "model.safetensors")


@pytest.mark.parametrize("tie", [True, False])
def test_a_saved_model_reloads_with_no_key_missing(tmp_path, tokenizer, tie):
    state = saved_state(tiny_model(tokenizer, tie_word_embeddings=tie), tmp_path)
    assert ("lm_head.weight" in state) is not tie  # the tied copy is left out of the file
    fresh = tiny_model(tokenizer, tie_word_embeddings=tie, initializer_range=0.5)
    result = fresh.load_state_dict(state, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []
    expected = state["model.embed_tokens.weight"] if tie else state["lm_head.weight"]
    assert torch.equal(fresh.lm_head.weight, expected)


def test_a_missing_embedding_is_still_reported_with_its_tied_head(tmp_path, tokenizer):
    state = saved_state(tiny_model(tokenizer), tmp_path)
    del state["model.embed_tokens.weight"]
    result = tiny_model(tokenizer).load_state_dict(state, strict=False)
    assert set(result.missing_keys) == {"model.embed_tokens.weight", "lm_head.weight"}


def test_best_model_reload_at_the_end_of_training_reports_no_missing_keys(tmp_path, tokenizer):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(handler)
    try:
        trainer = train_tiny_run(tmp_path / "run", tokenizer, max_steps=6)
    finally:
        transformers_logger.removeHandler(handler)
    assert trainer.state.best_model_checkpoint is not None  # the reload ran
    messages = [record.getMessage() for record in records]
    assert not [m for m in messages if "missing keys" in m], messages
