"""Where training data and starting weights come from: a held-out split of one file, a local dataset
folder (`dataset_name`), a stream, parallel tokenisation, and a trained model to continue from."""

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file

from hf_custom_lm.training import train_language_model

from .test_training import data_arguments, model_arguments, tokenizer_dir, training_arguments  # noqa: F401


def final_state(run):
    return json.loads((run / "trainer_state.json").read_text())


def test_validation_is_held_out_from_the_training_file(tmp_path, tokenizer_dir):
    data_args = data_arguments(tmp_path, validation_file=None, validation_split_percentage=25,
                               preprocessing_num_workers=2)
    metrics = train_language_model(model_arguments(tokenizer_dir), data_args, training_arguments(tmp_path, max_steps=2))
    assert math.isfinite(metrics["eval_bits_per_byte"])


def test_local_dataset_folder_by_dataset_name(tmp_path, tokenizer_dir):
    source = data_arguments(tmp_path)
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    shutil.copy(source.train_file, folder / "train.jsonl")
    shutil.copy(source.validation_file, folder / "validation.jsonl")
    data_args = data_arguments(tmp_path, train_file=None, validation_file=None, dataset_name=str(folder))
    metrics = train_language_model(model_arguments(tokenizer_dir), data_args, training_arguments(tmp_path, max_steps=2))
    assert math.isfinite(metrics["eval_loss"])


def test_streaming_dataset_trains_and_evaluates(tmp_path, tokenizer_dir):
    data_args = data_arguments(tmp_path, streaming=True, max_eval_samples=8)
    args = training_arguments(tmp_path, max_steps=4, eval_steps=2, save_steps=2)
    metrics = train_language_model(model_arguments(tokenizer_dir), data_args, args)
    assert final_state(tmp_path / "run")["global_step"] == 4 and math.isfinite(metrics["eval_bits_per_byte"])


def test_training_continues_from_a_trained_model_folder(tmp_path, tokenizer_dir):
    data_args = data_arguments(tmp_path)
    first = train_language_model(model_arguments(tokenizer_dir), data_args, training_arguments(tmp_path, max_steps=4))
    # learning rate 0: the continued run must start from, and keep, exactly the saved weights
    args = training_arguments(tmp_path, output_dir=str(tmp_path / "second"), max_steps=2, learning_rate=0.0)
    second = train_language_model(model_arguments(tokenizer_dir, model_name_or_path=str(tmp_path / "run")), data_args,
                                  args)
    assert second["eval_loss"] == pytest.approx(first["eval_loss"], abs=1e-6)
    before = load_file(tmp_path / "run" / "model.safetensors")
    after = load_file(tmp_path / "second" / "model.safetensors")
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_config_overrides_do_not_apply_to_a_trained_model(tmp_path, tokenizer_dir):
    model_args = model_arguments(tokenizer_dir, model_name_or_path=str(tmp_path), config_overrides="hidden_size=32")
    with pytest.raises(ValueError, match="config_overrides` applies to a model trained from scratch"):
        train_language_model(model_args, data_arguments(tmp_path), training_arguments(tmp_path))
    missing = model_arguments(tokenizer_dir, model_name_or_path=str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        train_language_model(missing, data_arguments(tmp_path), training_arguments(tmp_path))
