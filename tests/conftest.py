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
    """The package's byte-level BPE trained on SAMPLE_TEXT (eos id 0, pad id 1, as the bundled one)."""
    from hf_custom_lm.training.tokenization import train_tokenizer

    return train_tokenizer(dataset=SAMPLE_TEXT, vocab_size=vocab_size, min_frequency=0)


@pytest.fixture(scope="session")
def tokenizer():
    """The bundled tokenizer (package data, 8192 tokens)."""
    from hf_custom_lm.training.tokenization import load_tokenizer

    return load_tokenizer()


def tiny_config(**overrides) -> CustomLMConfig:
    """2 layers, 64 wide, GQA 4:2, vocab 512: small enough for each test to build its own."""
    defaults = dict(vocab_size=512, max_position_embeddings=128)
    return CustomLMConfig.from_preset("tiny", **{**defaults, **overrides})


@pytest.fixture
def seeded():
    torch.manual_seed(0)
    yield
