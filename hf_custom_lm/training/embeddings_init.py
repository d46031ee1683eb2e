"""Initialise input embeddings from pretrained word vectors (GloVe or word2vec text format).

A byte-level BPE vocabulary holds many whole words, usually twice: `the` (start of text) and `Ġthe`
(after a space). Each such token takes the vector of its word (exact match first, then lower case);
other tokens keep their random initialisation.

Dimensions: the vectors (d) are multiplied by a fixed random matrix (d, D) with orthonormal rows when
d <= D (inner products between words are kept exactly) or orthonormal columns when d > D (a random
projection, which keeps them approximately); d == D uses the vectors as they are. The projected rows
are then centred and scaled to standard deviation `initializer_range`, the scale of the rows they
replace, so logits through tied output embeddings start at the usual size.

Freezing zeroes the gradient of the covered rows with a hook on the embedding weight. With tied
embeddings those rows are frozen as output embeddings too. AdamW with zero gradients leaves a row
unchanged only without weight decay; the Trainer of `training.py` excludes embeddings from decay.
The hook lives on the parameter, so it works with DDP but not with FSDP, which flattens parameters.
"""

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


@dataclass
class EmbeddingInitReport:
    vectors_read: int
    vector_dim: int
    hidden_size: int
    vocab_size: int
    covered_token_ids: list[int]
    frozen: bool
    hook: torch.utils.hooks.RemovableHandle | None = field(default=None, repr=False)

    @property
    def coverage(self) -> float:
        """Fraction of the vocabulary whose embedding row came from a word vector."""
        return len(self.covered_token_ids) / self.vocab_size


def read_word_vectors(path: str | Path) -> tuple[list[str], torch.Tensor]:
    """Words and their vectors (N, d) from a GloVe file (`word v1 ... vd` per line) or a word2vec text
    file (the same after a `count dim` header line). `.gz` files are read compressed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Word-vector file {str(path)!r} does not exist; pass a GloVe or word2vec text file.")
    opener = gzip.open if path.suffix == ".gz" else open
    words, rows, dim = [], [], None
    with opener(path, "rt", encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if line_number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if len(parts) < 2:
                continue
            dim = dim or len(parts) - 1
            if len(parts) - 1 != dim:
                raise ValueError(
                    f"{path}:{line_number}: word {parts[0]!r} has {len(parts) - 1} values, earlier lines have {dim}; "
                    "is this a GloVe / word2vec text file with one space-separated vector per line?"
                )
            try:
                rows.append([float(x) for x in parts[1:]])
            except ValueError:
                raise ValueError(f"{path}:{line_number}: non-numeric value in the vector of {parts[0]!r}.") from None
            words.append(parts[0])
    if not words:
        raise ValueError(f"Word-vector file {str(path)!r} holds no vectors.")
    return words, torch.tensor(rows, dtype=torch.float32)


def token_words(tokenizer) -> dict[int, str]:
    """Token id -> the word the token spells on its own, leading space removed, for non-special tokens
    whose text is a single whitespace-free word (`Ġthe` -> `the`, `the` -> `the`, `Ġ` -> none)."""
    special = set(tokenizer.all_special_ids)
    words = {}
    for token, token_id in tokenizer.get_vocab().items():
        if token_id in special:
            continue
        text = tokenizer.convert_tokens_to_string([token])
        word = text[1:] if text.startswith(" ") else text
        if word and not any(ch.isspace() for ch in word) and "\ufffd" not in word:
            words[token_id] = word
    return words


def projection_matrix(in_dim: int, out_dim: int, seed: int = 0) -> torch.Tensor:
    """A fixed (in_dim, out_dim) matrix with orthonormal rows (in_dim <= out_dim) or columns (in_dim > out_dim)."""
    if in_dim == out_dim:
        return torch.eye(in_dim)
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(max(in_dim, out_dim), min(in_dim, out_dim), generator=generator)
    q, _ = torch.linalg.qr(gaussian)  # (max, min), orthonormal columns
    return q.T if in_dim < out_dim else q


def freeze_embedding_rows(weight: nn.Parameter, row_ids: list[int]) -> torch.utils.hooks.RemovableHandle:
    """Zero the gradient of the given rows of `weight` (V, D) on every backward pass."""
    keep = torch.ones(weight.shape[0], 1)
    keep[row_ids] = 0.0
    return weight.register_hook(lambda grad: grad * keep.to(grad.device, grad.dtype))


def init_embeddings_from_vectors(
    model, tokenizer, vectors_file: str | Path, freeze: bool = False, seed: int = 0
) -> EmbeddingInitReport:
    """Set the input-embedding rows of whole-word tokens from `vectors_file`; optionally freeze them."""
    words, vectors = read_word_vectors(vectors_file)
    index = {}
    for row, word in enumerate(words):
        index.setdefault(word, row)
    embedding = model.get_input_embeddings()
    vocab_size, hidden_size = embedding.weight.shape

    matches = {}  # token id -> vector row
    for token_id, word in token_words(tokenizer).items():
        row = index.get(word, index.get(word.lower()))
        if row is not None and token_id < vocab_size:
            matches[token_id] = row
    if not matches:
        raise ValueError(
            f"No token of the tokenizer spells a word of {str(vectors_file)!r} ({len(words)} words); "
            "use vectors for the language and casing of the training text."
        )
    token_ids = sorted(matches)
    projected = vectors[[matches[t] for t in token_ids]] @ projection_matrix(vectors.shape[1], hidden_size, seed)
    if len(token_ids) > 1:
        projected = projected - projected.mean(dim=0)
    std = projected.std(correction=0)
    if std > 0:
        projected = projected * (model.config.initializer_range / std)
    with torch.no_grad():
        embedding.weight[token_ids] = projected.to(embedding.weight.dtype)

    hook = freeze_embedding_rows(embedding.weight, token_ids) if freeze else None
    return EmbeddingInitReport(
        vectors_read=len(words),
        vector_dim=vectors.shape[1],
        hidden_size=hidden_size,
        vocab_size=vocab_size,
        covered_token_ids=token_ids,
        frozen=freeze,
        hook=hook,
    )
