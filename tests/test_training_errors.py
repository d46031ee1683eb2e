"""Bad input stops before training, with a message that names the problem and what to do instead."""

import json

import pytest

from hf_custom_lm.training.arguments import DataArguments, LMTrainingArguments, ModelArguments
from hf_custom_lm.training import parse_config_overrides, train_language_model

from .test_training import (  # noqa: F401
    data_arguments,
    model_arguments,
    tokenizer_dir,
    training_arguments,
    write_jsonl,
)


def assert_refused(tmp_path, error, match, model_args, data_args, training_args=None):
    training_args = training_args or training_arguments(tmp_path)
    with pytest.raises(error, match=match):
        train_language_model(model_args, data_args, training_args)
    assert not list((tmp_path / "run").glob("checkpoint-*")), "training started"


def test_missing_train_file(tmp_path, tokenizer_dir):
    data_args = data_arguments(tmp_path, train_file=str(tmp_path / "nope.jsonl"))
    assert_refused(tmp_path, FileNotFoundError, "nope.jsonl", model_arguments(tokenizer_dir), data_args)


def test_empty_dataset(tmp_path, tokenizer_dir):
    empty = write_jsonl(tmp_path / "empty.jsonl", [" ", ""])  # records, but no text
    data_args = data_arguments(tmp_path, train_file=empty)
    assert_refused(tmp_path, ValueError, "train split has no text", model_arguments(tokenizer_dir), data_args)


def test_dataset_shorter_than_one_block(tmp_path, tokenizer_dir):
    short = write_jsonl(tmp_path / "short.jsonl", ["A few words."])
    data_args = data_arguments(tmp_path, train_file=short)
    assert_refused(tmp_path, ValueError, r"fewer than block_size=32.*--block_size", model_arguments(tokenizer_dir),
                   data_args)


def test_missing_text_column(tmp_path, tokenizer_dir):
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"body": "Some text here."}) + "\n")
    data_args = data_arguments(tmp_path, train_file=str(path))
    assert_refused(tmp_path, ValueError, r"no column 'text'.*\['body'\].*text_column_name",
                   model_arguments(tokenizer_dir), data_args)


def test_unknown_config_override_key_suggests_the_right_one(tmp_path, tokenizer_dir):
    model_args = model_arguments(tokenizer_dir, config_overrides="num_hiden_layers=2")
    assert_refused(tmp_path, ValueError, r"Unknown config key 'num_hiden_layers'.*num_hidden_layers", model_args,
                   data_arguments(tmp_path))


def test_config_overrides_are_typed_and_checked():
    """Typed by transformers' `update_from_string`, as run_clm does; errors name the overrides and the format."""
    assert parse_config_overrides("num_hidden_layers=3,hidden_dropout=0.1,tie_word_embeddings=false") == {
        "num_hidden_layers": 3, "hidden_dropout": 0.1, "tie_word_embeddings": False,
    }
    with pytest.raises(ValueError, match="tie_word_embeddings=maybe.*cannot be read.*true or false"):
        parse_config_overrides("tie_word_embeddings=maybe")
    with pytest.raises(ValueError, match="hidden_size=wide.*cannot be read"):
        parse_config_overrides("hidden_size=wide")
    with pytest.raises(ValueError, match="cannot be read.*`key=value` pairs"):
        parse_config_overrides("hidden_size")


def test_config_overrides_keep_derived_fields_consistent():
    """`head_dim` follows an overridden `hidden_size` when it is not given itself."""
    from hf_custom_lm.training import build_config
    from hf_custom_lm.training.tokenization import load_tokenizer

    config = build_config("tiny", "hidden_size=128", load_tokenizer())
    assert (config.hidden_size, config.head_dim) == (128, 128 // config.num_attention_heads)


def test_tokenizer_larger_than_the_model_vocabulary(tmp_path, tokenizer_dir, tokenizer):
    model_args = model_arguments(tokenizer_dir, config_overrides="vocab_size=300")
    assert len(tokenizer) > 300
    assert_refused(tmp_path, ValueError, rf"tokenizer has {len(tokenizer)} tokens.*`vocab_size` is 300.*"
                   rf"vocab_size={len(tokenizer)}", model_args, data_arguments(tmp_path))


def test_unknown_config_name(tmp_path, tokenizer_dir):
    model_args = model_arguments(tokenizer_dir, config_name="huge")
    assert_refused(tmp_path, FileNotFoundError, "neither a preset", model_args, data_arguments(tmp_path))


def test_missing_tokenizer_folder(tmp_path):
    model_args = ModelArguments(tokenizer_name=str(tmp_path / "no_tokenizer"))
    assert_refused(tmp_path, FileNotFoundError, "tokenizer_name", model_args, data_arguments(tmp_path))


def test_streaming_needs_max_steps(tmp_path, tokenizer_dir):
    args = training_arguments(tmp_path, max_steps=-1)
    assert_refused(tmp_path, ValueError, "set `max_steps`", model_arguments(tokenizer_dir),
                   data_arguments(tmp_path, streaming=True), args)


def test_argument_checks_fail_at_parse_time(tmp_path):
    with pytest.raises(ValueError, match="needs `embedding_vectors_file`"):
        ModelArguments(freeze_pretrained_embeddings=True)
    with pytest.raises(ValueError, match="block_size"):
        DataArguments(block_size=1)
    with pytest.raises(ValueError, match="Early stopping needs periodic evaluation"):
        LMTrainingArguments(output_dir=str(tmp_path), eval_strategy="no", report_to=[])
