"""Untrusted folders: nothing is unpickled, no foreign code is imported, damaged files are named."""

import json
import os
import pickle

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM
from hf_custom_lm.folders import check_model_folder, load_model, load_tokenizer_from

from ..conftest import tiny_config


class _WritesSentinel:
    """Unpickling this runs `open(path, "w")`: the file appearing means code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def sentinel(tmp_path):
    path = tmp_path / "sentinel"
    yield path
    assert not path.exists(), "a crafted pickle was executed"


def write_pickle(path, sentinel):
    path.write_bytes(pickle.dumps({"weight": _WritesSentinel(str(sentinel))}))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "rng_state.pth", "training_args.bin", "optimizer.pt"])
def test_crafted_pickles_are_never_executed(tmp_path, sentinel, name):
    folder = tmp_path / "model"
    tiny_config().save_pretrained(folder)
    write_pickle(folder / name, sentinel)
    with pytest.raises(FileNotFoundError, match="No model.safetensors"):
        load_model(folder)
    if name == "pytorch_model.bin":  # transformers' own loader refuses too (torch weights_only)
        with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
            AutoModelForCausalLM.from_pretrained(folder)


def test_pickles_beside_safetensors_are_ignored(tmp_path, sentinel):
    model = CustomLMForCausalLM(tiny_config())
    model.save_pretrained(tmp_path)
    write_pickle(tmp_path / "pytorch_model.bin", sentinel)
    write_pickle(tmp_path / "training_args.bin", sentinel)
    loaded = load_model(tmp_path)
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)


def test_foreign_auto_map_is_not_imported_without_trust(tmp_path, sentinel):
    CustomLMForCausalLM(tiny_config()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    config["_attn_implementation_internal"] = "eager"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "evil.py").write_text(f"open({str(sentinel)!r}, 'w')\n")
    assert isinstance(AutoConfig.from_pretrained(tmp_path), CustomLMConfig)
    model = load_model(tmp_path)
    assert type(model) is CustomLMForCausalLM
    assert model.config._attn_implementation == "sdpa"  # the private key in the file was not obeyed


def test_malformed_config_names_the_file(tmp_path):
    CustomLMForCausalLM(tiny_config()).save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_model(tmp_path)


def test_truncated_safetensors_names_the_file(tmp_path):
    CustomLMForCausalLM(tiny_config()).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="model.safetensors is not a complete safetensors file"):
        check_model_folder(tmp_path)


def test_missing_folder_and_tokenizer_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "tok").mkdir()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer_from(tmp_path / "tok")


def test_unknown_config_fields_are_reported(tmp_path, caplog):
    import logging

    tiny_config().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["hiden_size"] = 4096  # a typo
    (tmp_path / "config.json").write_text(json.dumps(config))
    logger = logging.getLogger("hf_custom_lm.model.configuration_custom_lm")
    logger.addHandler(caplog.handler)
    try:
        AutoConfig.from_pretrained(tmp_path)
        AutoConfig.from_pretrained(tmp_path, num_labels=3)
    finally:
        logger.removeHandler(caplog.handler)
    messages = [r.getMessage() for r in caplog.records if "unknown fields" in r.getMessage()]
    assert messages and all("hiden_size" in m and "num_labels" not in m for m in messages)
