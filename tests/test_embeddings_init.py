"""Word-vector initialisation of the input embeddings: file formats, token-to-word mapping, projection,
coverage, and frozen rows that training leaves exactly unchanged."""

import json

import pytest
import torch
from safetensors.torch import load_file

from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM
from hf_custom_lm.training.embeddings_init import (
    init_embeddings_from_vectors,
    projection_matrix,
    read_word_vectors,
    token_words,
)
from hf_custom_lm.training import train_language_model

from .test_training import data_arguments, model_arguments, tokenizer_dir, training_arguments  # noqa: F401

WORDS = ["the", "and", "of", "to", "a", "was", "her", "she", "it", "zzyzx"]


def write_vectors(path, words, dim, header=False, seed=0):
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(len(words), dim, generator=generator)
    with open(path, "w", encoding="utf-8") as f:
        if header:
            f.write(f"{len(words)} {dim}\n")
        for word, vector in zip(words, vectors):
            f.write(word + " " + " ".join(f"{x:.6f}" for x in vector.tolist()) + "\n")
    return path


def test_glove_and_word2vec_text_formats_read_the_same(tmp_path):
    glove = write_vectors(tmp_path / "glove.txt", WORDS, 5)
    word2vec = write_vectors(tmp_path / "w2v.txt", WORDS, 5, header=True)
    words_a, vectors_a = read_word_vectors(glove)
    words_b, vectors_b = read_word_vectors(word2vec)
    assert words_a == words_b == WORDS and vectors_a.shape == (len(WORDS), 5)
    torch.testing.assert_close(vectors_a, vectors_b)


def test_bad_vector_files_are_refused_with_the_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_word_vectors(tmp_path / "missing.txt")
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("the 0.1 0.2 0.3\nand 0.1 0.2\n")
    with pytest.raises(ValueError, match=r"ragged.txt:2: word 'and' has 2 values, earlier lines have 3"):
        read_word_vectors(ragged)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="holds no vectors"):
        read_word_vectors(tmp_path / "empty.txt")


def test_whole_word_tokens_map_with_and_without_the_leading_space(tokenizer):
    words = token_words(tokenizer)
    vocab = tokenizer.get_vocab()
    assert words[vocab["Ġthe"]] == "the"
    assert words[vocab["the"]] == "the"
    assert tokenizer.eos_token_id not in words and tokenizer.pad_token_id not in words
    assert vocab["Ġ"] not in words  # a bare space is no word


@pytest.mark.parametrize("in_dim, out_dim", [(5, 16), (16, 5), (8, 8)])
def test_projection_keeps_inner_products_when_it_widens(in_dim, out_dim):
    matrix = projection_matrix(in_dim, out_dim)
    assert matrix.shape == (in_dim, out_dim)
    if in_dim <= out_dim:  # orthonormal rows: V @ M keeps every inner product of rows of V
        torch.testing.assert_close(matrix @ matrix.T, torch.eye(in_dim), atol=1e-5, rtol=0)
    else:  # orthonormal columns: a random projection
        torch.testing.assert_close(matrix.T @ matrix, torch.eye(out_dim), atol=1e-5, rtol=0)
    torch.testing.assert_close(projection_matrix(in_dim, out_dim), matrix)  # fixed by the seed


def test_init_sets_covered_rows_reports_coverage_and_scales_to_the_init_range(tmp_path, tokenizer):
    model = CustomLMForCausalLM(CustomLMConfig.from_preset("tiny", vocab_size=len(tokenizer)))
    before = model.get_input_embeddings().weight.detach().clone()
    report = init_embeddings_from_vectors(model, tokenizer, write_vectors(tmp_path / "v.txt", WORDS, 12))
    vocab = tokenizer.get_vocab()
    # exact word first, else its lower case: "the", "Ġthe", "The", "ĠThe" all take the vector of "the"
    expected = {i for t, i in vocab.items() if (t[1:] if t.startswith("Ġ") else t).lower() in WORDS}
    assert {vocab["the"], vocab["Ġthe"], vocab["ĠThe"]} <= expected
    assert set(report.covered_token_ids) == expected and "zzyzx" not in vocab
    assert report.coverage == pytest.approx(len(expected) / len(tokenizer))
    assert (report.vectors_read, report.vector_dim, report.hidden_size) == (len(WORDS), 12, 64)
    after = model.get_input_embeddings().weight.detach()
    covered = sorted(expected)
    assert not torch.equal(after[covered], before[covered])
    others = [i for i in range(len(tokenizer)) if i not in expected]
    assert torch.equal(after[others], before[others])
    torch.testing.assert_close(after[vocab["the"]], after[vocab["Ġthe"]])  # one word, one vector
    assert after[covered].std(correction=0).item() == pytest.approx(model.config.initializer_range, rel=1e-4)


def test_vectors_matching_no_token_are_refused(tmp_path, tokenizer):
    model = CustomLMForCausalLM(CustomLMConfig.from_preset("tiny", vocab_size=len(tokenizer)))
    path = write_vectors(tmp_path / "v.txt", ["qqqxq", "zzyzx"], 4)
    with pytest.raises(ValueError, match="No token of the tokenizer spells a word"):
        init_embeddings_from_vectors(model, tokenizer, path)


def test_frozen_rows_stay_exactly_unchanged_through_training(tmp_path, tokenizer_dir, tokenizer):
    vectors = write_vectors(tmp_path / "v.txt", WORDS, 48)
    model_args = model_arguments(tokenizer_dir, embedding_vectors_file=str(vectors), freeze_pretrained_embeddings=True)
    # weight decay on, to show embeddings are excluded from it (decoupled decay would move frozen rows)
    args = training_arguments(tmp_path, max_steps=6, eval_steps=3, save_steps=3, weight_decay=0.1)
    metrics = train_language_model(model_args, data_arguments(tmp_path), args)

    reference = CustomLMForCausalLM(CustomLMConfig.from_preset("tiny", vocab_size=8192))
    report = init_embeddings_from_vectors(reference, tokenizer, vectors)
    assert metrics["embedding_coverage"] == pytest.approx(report.coverage)
    assert json.loads((tmp_path / "run" / "train_results.json").read_text())["embedding_coverage"] == metrics[
        "embedding_coverage"]

    trained = load_file(tmp_path / "run" / "model.safetensors")["model.embed_tokens.weight"]
    start = reference.get_input_embeddings().weight.detach()
    frozen = report.covered_token_ids
    assert torch.equal(trained[frozen], start[frozen])
    # the other rows did train (their init differs from `reference`, so compare with a fresh-init run)
    untouched = load_file(tmp_path / "run" / "checkpoint-3" / "model.safetensors")["model.embed_tokens.weight"]
    assert torch.equal(untouched[frozen], start[frozen])
    assert not torch.equal(trained, untouched)
