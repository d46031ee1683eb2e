"""Folders that training, classifier fine-tuning and export write load with the cache on, as the config had it
before the Trainer turned it off for training (`model.config.use_cache = args.use_cache`), read from the files."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.integrations.executorch import TorchExportableModuleForDecoderOnlyLM

from hf_custom_lm.hub import export_run
from hf_custom_lm.training import train_language_model
from hf_custom_lm.training.arguments import ClassifierArguments
from hf_custom_lm.training.finetune_classifier import finetune_classifier

from .test_classification import classifier_training_arguments, write_labelled_csv
from .test_training import data_arguments, model_arguments, tokenizer_dir, training_arguments  # noqa: F401

# The classic switches (sinusoidal positions, LayerNorm, GELU MLP, dropout) at the tiny preset's sizes.
CLASSIC_TINY = "hidden_size=64,intermediate_size=176,num_hidden_layers=2,num_attention_heads=4,max_position_embeddings=256"


def use_cache_in(folder) -> bool:
    return json.loads((folder / "config.json").read_text())["use_cache"]


@pytest.mark.slow
@pytest.mark.parametrize("preset, overrides", [("tiny", None), ("classic", CLASSIC_TINY)], ids=["default", "classic"])
def test_train_finetune_and_export_write_use_cache_true(tmp_path, tokenizer_dir, preset, overrides):
    args = training_arguments(tmp_path, max_steps=2, eval_steps=2, save_steps=2)
    assert args.use_cache is False  # what the Trainer writes into the config while it trains
    train_language_model(
        model_arguments(tokenizer_dir, config_name=preset, config_overrides=overrides), data_arguments(tmp_path), args
    )
    run = tmp_path / "run"
    assert use_cache_in(run) is True
    assert use_cache_in(run / "checkpoint-2") is True  # checkpoints too: a run can be exported from one

    classifier = tmp_path / "classifier"
    finetune_classifier(
        ClassifierArguments(model_name_or_path=str(run), train_file=write_labelled_csv(tmp_path / "labels.csv")),
        classifier_training_arguments(tmp_path, output_dir=str(classifier), max_steps=2, eval_steps=2, save_steps=2),
    )
    assert use_cache_in(classifier) is True

    folders = [export_run(run, tmp_path / "custom_lm")]
    if preset == "tiny":  # the classic switches have no plain-Llama form
        folders.append(export_run(run, tmp_path / "llama", format="llama"))
    for folder in folders:
        assert use_cache_in(folder) is True, folder.name
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        with torch.no_grad():
            assert model(torch.tensor([[3, 4, 5]])).cache is not None
        model.generation_config.cache_implementation = "static"
        TorchExportableModuleForDecoderOnlyLM(model, batch_size=1, max_cache_len=8)  # refused with use_cache false


def test_a_config_that_turned_the_cache_off_keeps_it_off(tmp_path, tokenizer):
    """The saved value is the config's own, not always True: a model built with `use_cache=False` keeps it."""
    from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM
    from hf_custom_lm.folders import save_model_folder

    model = CustomLMForCausalLM(CustomLMConfig.from_preset("tiny", vocab_size=len(tokenizer), use_cache=False))
    save_model_folder(model, tokenizer, tmp_path / "off")
    assert use_cache_in(tmp_path / "off") is False
    model = CustomLMForCausalLM(CustomLMConfig.from_preset("tiny", vocab_size=len(tokenizer)))
    model.config.use_cache = False  # as the Trainer leaves it
    save_model_folder(model, tokenizer, tmp_path / "on")
    assert use_cache_in(tmp_path / "on") is True and model.config.use_cache is False  # the model keeps its value
