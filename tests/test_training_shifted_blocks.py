"""Training blocks cut at a new offset each epoch (`--shift_block_boundaries`): the first epoch is the packed
blocks, later ones the same token stream cut elsewhere with positions that restart at every document, a
resumed run cuts its epoch as before, and `--no_shift_block_boundaries` keeps the packed blocks."""

import functools
import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerState

from hf_custom_lm.model import CustomLMForCausalLM
from hf_custom_lm.training import train_language_model
from hf_custom_lm.training.language_model import prepare_lm_datasets
from hf_custom_lm.training.shifted_blocks import ShiftBlocksCallback, ShiftedBlocks, shifted_training_blocks

from .test_training import (  # noqa: F401  (tokenizer_dir is a fixture)
    data_arguments,
    model_arguments,
    tokenizer_dir,
    training_arguments,
)
from .test_training_resume import StopAt


def packed_blocks(tmp_path, tokenizer, **overrides):
    return prepare_lm_datasets(data_arguments(tmp_path, **overrides), tokenizer, 128)[0]


def cut_by_hand(blocks, eos_token_id: int, offset: int) -> list[dict]:
    """The stream of `blocks` cut at `offset` another way: whole-stream document positions, clipped to each
    block's start, the tail wrapped to the head as a new document."""
    stream = np.concatenate([np.asarray(ids) for ids in blocks["input_ids"]])
    document = np.zeros(len(stream), dtype=np.int64)
    for index in range(1, len(stream)):
        document[index] = 0 if stream[index - 1] == eos_token_id else document[index - 1] + 1
    size = len(blocks[0]["input_ids"])
    order = (offset + np.arange(len(stream))) % len(stream)
    stream, document = stream[order], document[order]
    return [{"input_ids": stream[i:i + size], "position_ids": np.minimum(document[i:i + size], np.arange(size))}
            for i in range(0, len(stream), size)]


@pytest.mark.parametrize("document_masking", [True, False])
def test_each_epoch_cuts_the_same_stream_at_its_own_offset(tmp_path, tokenizer, document_masking):
    blocks = packed_blocks(tmp_path, tokenizer, document_masking=document_masking)
    shifted = ShiftedBlocks(blocks, tokenizer.eos_token_id, seed=0)
    assert len(shifted) == len(blocks) >= 8

    shifted.set_epoch(0)
    for index in (0, 3, len(blocks) - 1):
        item = shifted[index]
        assert item["input_ids"].tolist() == blocks[index]["input_ids"] == item["labels"].tolist()
        if document_masking:
            assert item["position_ids"].tolist() == blocks[index]["position_ids"]
        else:
            assert "position_ids" not in item

    offsets = []
    for epoch in (1, 2, 3):
        shifted.set_epoch(epoch)
        offsets.append(shifted.offset)
        expected = cut_by_hand(blocks, tokenizer.eos_token_id, shifted.offset)
        for index in range(len(blocks)):  # the last block wraps to the first
            item = shifted[index]
            assert item["input_ids"].tolist() == expected[index]["input_ids"].tolist() == item["labels"].tolist()
            if document_masking:
                assert item["position_ids"].tolist() == expected[index]["position_ids"].tolist()
    assert all(0 < offset < 128 for offset in offsets) and len(set(offsets)) == 3
    again = ShiftedBlocks(blocks, tokenizer.eos_token_id, seed=0)
    again.set_epoch(2)
    assert again.offset == offsets[1]  # from (seed, epoch) alone: a resumed run cuts as before


def test_the_callback_reads_the_epoch_from_the_trainer_state(tmp_path, tokenizer):
    shifted = ShiftedBlocks(packed_blocks(tmp_path, tokenizer), tokenizer.eos_token_id, seed=0)
    callback = ShiftBlocksCallback(shifted)
    for epoch, expected in ((None, 0), (0.0, 0), (1 - 1e-9, 1), (2.6, 2)):  # resumed inside the third epoch
        callback.on_epoch_begin(None, TrainerState(epoch=epoch), None)
        reference = ShiftedBlocks(packed_blocks(tmp_path, tokenizer), tokenizer.eos_token_id, seed=0)
        reference.set_epoch(expected)
        assert shifted.offset == reference.offset


@pytest.mark.parametrize("shift", [True, False])
def test_a_run_over_several_epochs_trains_on_shifted_blocks_unless_told_not_to(tmp_path, tokenizer_dir, tokenizer,
                                                                              monkeypatch, shift):
    seen = []
    forward = CustomLMForCausalLM.forward

    @functools.wraps(forward)  # the Trainer keeps the dataset columns that the signature names
    def spy(self, input_ids=None, *args, **kwargs):
        if self.training:
            seen.extend(tuple(row) for row in input_ids.tolist())
        return forward(self, input_ids, *args, **kwargs)

    monkeypatch.setattr(CustomLMForCausalLM, "forward", spy)
    data_args = data_arguments(tmp_path, max_train_samples=16, shift_block_boundaries=shift)
    args = training_arguments(tmp_path, max_steps=6, eval_strategy="no", load_best_model_at_end=False)
    train_language_model(model_arguments(tokenizer_dir), data_args, args)  # 2 steps of 8 an epoch: 3 epochs
    packed = {tuple(row) for row in packed_blocks(tmp_path, tokenizer, max_train_samples=16)["input_ids"]}
    assert len(seen) == 48 and set(seen[:16]) == packed
    assert (set(seen[16:]) & packed == set()) if shift else (set(seen[16:]) == packed)


def test_a_run_resumed_inside_a_shifted_epoch_matches_an_uninterrupted_one(tmp_path, tokenizer_dir):
    data_args = data_arguments(tmp_path, max_train_samples=16)
    common = dict(max_steps=6, save_steps=1, eval_strategy="no", load_best_model_at_end=False)
    straight = training_arguments(tmp_path, output_dir=str(tmp_path / "straight"), **common)
    train_language_model(model_arguments(tokenizer_dir), data_args, straight)
    resumed = training_arguments(tmp_path, output_dir=str(tmp_path / "resumed"), **common)
    train_language_model(model_arguments(tokenizer_dir), data_args, resumed, [StopAt(3)])  # inside epoch 1
    resumed.resume = True
    train_language_model(model_arguments(tokenizer_dir), data_args, resumed)
    expected = load_file(tmp_path / "straight" / "checkpoint-6" / "model.safetensors")
    actual = load_file(tmp_path / "resumed" / "checkpoint-6" / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=1e-6)
    state = json.loads((tmp_path / "resumed" / "trainer_state.json").read_text())
    assert state["global_step"] == 6


def test_blocks_stay_put_for_a_stream_and_for_workers_that_persist(tmp_path, tokenizer, caplog):
    blocks = packed_blocks(tmp_path, tokenizer)
    dataset, callbacks = shifted_training_blocks(blocks, tokenizer.eos_token_id, training_arguments(tmp_path))
    assert isinstance(dataset, ShiftedBlocks) and isinstance(callbacks[0], ShiftBlocksCallback)

    streamed = blocks.to_iterable_dataset()
    assert shifted_training_blocks(streamed, tokenizer.eos_token_id, training_arguments(tmp_path)) == (streamed, [])

    persistent = training_arguments(tmp_path, dataloader_num_workers=1, dataloader_persistent_workers=True)
    with caplog.at_level(logging.WARNING, logger="hf_custom_lm.training.shifted_blocks"):
        assert shifted_training_blocks(blocks, tokenizer.eos_token_id, persistent) == (blocks, [])
    assert "--dataloader_persistent_workers false" in caplog.text
