"""Shared fixtures: tiny configs and a tokenizer, built locally (nothing downloads)."""

import os

# Set before torch loads OpenMP: spinning waiters slow everything on small shared machines.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

import hf_custom_lm  # noqa: E402  (registers the Auto classes)
from hf_custom_lm import CustomLMConfig  # noqa: E402

SAMPLE_TEXT = [
    "Once upon a time there was a little model that wanted to read every book in the library.",
    "It read about kings and cabbages, about ships and sealing wax, and about why the sea is boiling hot.",
    "The quick brown fox jumps over the lazy dog. 敏捷的棕色狐狸跳过了懒狗。",
    "Attention is all you need: softmax(QK^T / sqrt(d_k)) V, then a feed-forward layer, then dropout.",
] * 8


def build_tiny_tokenizer(vocab_size: int = 512):
    """A byte-level BPE trained on SAMPLE_TEXT, as a plain `PreTrainedTokenizerFast` (eos id 0, pad id 1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(SAMPLE_TEXT, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
        clean_up_tokenization_spaces=False,
    )


@pytest.fixture(scope="session")
def tokenizer():
    """The bundled tokenizer when it is packaged, else a tiny one with the same special-token layout."""
    from hf_custom_lm.training.tokenization import TOKENIZER_DIR, load_tokenizer

    if (TOKENIZER_DIR / "tokenizer.json").is_file():
        return load_tokenizer()
    return build_tiny_tokenizer()


def tiny_config(**overrides) -> CustomLMConfig:
    """2 layers, 64 wide, GQA 4:2, vocab 512: builds and runs in milliseconds."""
    defaults = dict(vocab_size=512, max_position_embeddings=128)
    return CustomLMConfig.from_preset("tiny", **{**defaults, **overrides})


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    yield
