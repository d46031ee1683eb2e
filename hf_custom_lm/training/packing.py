"""Tokenise documents and pack the token stream into fixed-length blocks for causal-LM training.

    lm = tokenize_and_pack(raw, tokenizer, block_size=512)  # DatasetDict of blocks: input_ids, labels, num_bytes
    bits_per_byte(eval_loss, bytes_per_token(lm["validation"]))
    lm = tokenize_and_pack(raw, tokenizer, 512, document_masking=True)  # + position_ids, restarting per document

The decisions (end-of-text after every document, blocks that may span documents, bytes spread over tokens
for bits per byte, caching by fingerprint) are listed in `data.py`'s docstring.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import (
    Dataset,
    DatasetDict,
    Features,
    IterableDataset,
    IterableDatasetDict,
    List,
    Value,
)
from datasets.fingerprint import Hasher

from .data import check_text_column

logger = logging.getLogger(__name__)

# bump when the tokenised or packed layout changes, so that stale caches are not reused
_CACHE_VERSION = 1
# documents tokenised per call to the tokenizer
_BATCH_SIZE = 1000

TOKENIZED_FEATURES = Features({"input_ids": List(Value("int32")), "num_bytes": Value("int64")})
PACKED_FEATURES = Features(
    {"input_ids": List(Value("int32")), "labels": List(Value("int32")), "num_bytes": Value("int64")}
)
# With `document_masking`: each token's position, counted from the start of its document or of its block,
# whichever is later. transformers' mask builder (`create_causal_mask`) reads a position that does not follow
# the one before as the start of a new sequence and keeps attention inside each one; rotary and learned
# positions restart there too, as if the document began a block.
MASKED_FEATURES = Features({**PACKED_FEATURES, "position_ids": List(Value("int32"))})




def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of what the tokenizer does to text, equal across processes for equal tokenizers.

    `datasets` would otherwise pickle the tokenizer, whose runtime padding/truncation state differs between a
    fresh and a used tokenizer, and recompute every time.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return Hasher.hash(tokenizer)
    state = json.loads(backend.to_str())
    state.pop("truncation", None)
    state.pop("padding", None)
    return Hasher.hash([type(tokenizer).__name__, json.dumps(state, sort_keys=True), tokenizer.eos_token_id])


def _tokenize_batch(batch: dict, tokenizer, text_column_name: str, eos_token_id: int) -> dict:
    """Documents -> token ids with eos appended, and their UTF-8 byte counts; empty documents are dropped."""
    texts = [t for t in batch[text_column_name] if t is not None]
    if any(not isinstance(t, str) for t in texts):
        kind = next(type(t).__name__ for t in texts if not isinstance(t, str))
        raise ValueError(f"Column {text_column_name!r} holds {kind} values, not text.")
    texts = [t for t in texts if t and not t.isspace()]
    if not texts:
        return {"input_ids": [], "num_bytes": []}
    encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    return {
        "input_ids": [ids + [eos_token_id] for ids in encoded],
        "num_bytes": [len(t.encode("utf-8")) for t in texts],
    }


def _positions_in_documents(lengths: np.ndarray) -> np.ndarray:
    """Per token, its index in its document. Shapes: (docs,) -> (sum(lengths),)."""
    lengths = lengths.astype(np.int64)
    return np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _token_byte_shares(lengths: np.ndarray, num_bytes: np.ndarray) -> np.ndarray:
    """Per token, its share of its document's bytes: for token k of n in a b-byte document,
    floor(b(k+1)/n) - floor(bk/n). Shapes: (docs,), (docs,) -> (sum(lengths),); each document's shares sum to b."""
    lengths = lengths.astype(np.int64)
    k = _positions_in_documents(lengths)
    n = np.repeat(lengths, lengths)
    b = np.repeat(num_bytes.astype(np.int64), lengths)
    return (b * (k + 1)) // n - (b * k) // n


def _blocks_table(tokens: np.ndarray, shares: np.ndarray, block_size: int, in_document: np.ndarray | None = None
                  ) -> pa.Table:
    """(n * block_size,) tokens and byte shares -> n rows of input_ids, labels and num_bytes; with `in_document`
    (each token's index in its document), also position_ids: min(index in document, index in block)."""
    n_blocks = len(tokens) // block_size
    offsets = pa.array(np.arange(n_blocks + 1, dtype=np.int64) * block_size, pa.int32())
    ids = pa.ListArray.from_arrays(offsets, pa.array(tokens.astype(np.int32)))
    num_bytes = shares.reshape(n_blocks, block_size).sum(axis=1) if n_blocks else np.zeros(0, np.int64)
    columns = {"input_ids": ids, "labels": ids, "num_bytes": pa.array(num_bytes, pa.int64())}
    if in_document is not None:
        positions = np.minimum(in_document.reshape(n_blocks, block_size), np.arange(block_size)).reshape(-1)
        columns["position_ids"] = pa.ListArray.from_arrays(offsets, pa.array(positions.astype(np.int32)))
    return pa.table(columns)


def _pack_batch(
    batch: pa.Table, indices: list[int], *, source: Dataset, doc_offsets: np.ndarray, block_size: int, n_blocks: int,
    document_masking: bool = False,
) -> pa.Table:
    """The blocks that start inside this batch of documents, reading into later documents for the last one.

    `doc_offsets[d]` is where document d starts in the split's token stream, so each batch knows its place
    without seeing the others (batches run in any order and in parallel).
    """
    first_doc, end_doc = indices[0], indices[-1] + 1
    start, end = int(doc_offsets[first_doc]), int(doc_offsets[end_doc])
    first_block = -(-start // block_size)
    last_block = min(-(-end // block_size), n_blocks)
    empty = np.zeros(0, np.int64)
    if first_block >= last_block:
        return _blocks_table(empty, empty, block_size, empty if document_masking else None)
    # documents [first_doc, stop_doc) cover tokens [start, last_block * block_size)
    stop_doc = int(np.searchsorted(doc_offsets, last_block * block_size, side="left"))
    docs = batch if stop_doc <= end_doc else pa.concat_tables([batch, source.with_format("arrow")[end_doc:stop_doc]])
    column = docs.column("input_ids")
    tokens = pc.list_flatten(column).to_numpy()
    lengths = pc.list_value_length(column).to_numpy()
    shares = _token_byte_shares(lengths, docs.column("num_bytes").to_numpy())
    lo, hi = first_block * block_size - start, last_block * block_size - start
    in_document = _positions_in_documents(lengths)[lo:hi] if document_masking else None
    return _blocks_table(tokens[lo:hi], shares[lo:hi], block_size, in_document)


def _too_short(split: str, num_tokens: int, block_size: int) -> ValueError:
    if num_tokens == 0:
        return ValueError(f"The {split} split has no text: it holds no non-empty document.")
    return ValueError(
        f"The {split} split has {num_tokens} tokens (eos included), fewer than block_size={block_size}, so not "
        f"one block can be built. Use a smaller block_size (--block_size, at most {num_tokens}) or more text."
    )


def _stream_blocks(
    raw: IterableDataset, tokenizer, text_column_name: str, eos_token_id: int, block_size: int, split: str,
    document_masking: bool = False,
) -> Iterator[dict]:
    """Packs a stream lazily; the same blocks as the map-style path for the same documents in the same order."""
    tokens, shares, in_document = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    num_tokens = yielded = 0
    for batch in raw.iter(batch_size=_BATCH_SIZE):
        if text_column_name not in batch:
            raise ValueError(
                f"The {split} split has no column {text_column_name!r}; its columns are {list(batch)}. "
                "Set text_column_name (--text_column_name) to the column that holds the text."
            )
        docs = _tokenize_batch(batch, tokenizer, text_column_name, eos_token_id)
        lengths = np.array([len(ids) for ids in docs["input_ids"]], dtype=np.int64)
        num_tokens += int(lengths.sum())
        tokens = np.concatenate([tokens, *map(np.asarray, docs["input_ids"])]).astype(np.int64)
        shares = np.concatenate([shares, _token_byte_shares(lengths, np.array(docs["num_bytes"], dtype=np.int64))])
        in_document = np.concatenate([in_document, _positions_in_documents(lengths)])
        n = len(tokens) // block_size * block_size
        if n:
            yield from _blocks_table(tokens[:n], shares[:n], block_size,
                                     in_document[:n] if document_masking else None).to_pylist()
            yielded += n // block_size
            tokens, shares, in_document = tokens[n:], shares[n:], in_document[n:]
    if not yielded:
        raise _too_short(split, num_tokens, block_size)


def _check_block_size(block_size: int, max_length: int | None) -> None:
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size={block_size!r} must be an integer >= 2 (a block predicts block_size - 1 tokens).")
    if max_length is not None and block_size > max_length:
        raise ValueError(
            f"block_size={block_size} is longer than the model's maximum length {max_length} "
            "(max_position_embeddings). Use --block_size of at most that, or a model with a longer context."
        )


def _cache_file(cache_dir: str | os.PathLike | None, kind: str, fingerprint: str) -> str | None:
    if cache_dir is None:
        return None  # next to the source dataset's own cache files, or nowhere for an in-memory dataset
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return str(Path(cache_dir) / f"{kind}-{fingerprint}.arrow")


def _tokenize_and_pack_split(
    raw: Dataset,
    split: str,
    tokenizer,
    block_size: int,
    text_column_name: str,
    num_proc: int | None,
    cache_dir: str | os.PathLike | None,
    load_from_cache_file: bool,
    document_masking: bool,
) -> Dataset:
    check_text_column(raw, text_column_name, f"{split} split")
    if raw.num_rows == 0:
        raise ValueError(f"The {split} split is empty.")
    fingerprint = Hasher.hash(
        ["tokenize", _CACHE_VERSION, raw._fingerprint, tokenizer_fingerprint(tokenizer), text_column_name]
    )
    tokenized = raw.map(
        _tokenize_batch,
        batched=True,
        batch_size=_BATCH_SIZE,
        num_proc=num_proc,
        remove_columns=raw.column_names,
        features=TOKENIZED_FEATURES,
        fn_kwargs={
            "tokenizer": tokenizer,
            "text_column_name": text_column_name,
            "eos_token_id": tokenizer.eos_token_id,
        },
        new_fingerprint=fingerprint,
        cache_file_name=_cache_file(cache_dir, "tokenized", fingerprint),
        load_from_cache_file=load_from_cache_file,
        desc=f"Tokenizing {split}",
    )
    if tokenized.num_rows == 0:
        raise ValueError(f"The {split} split has no text: every document in column {text_column_name!r} is empty.")

    lengths = pc.list_value_length(tokenized.data.column("input_ids")).to_numpy().astype(np.int64)
    doc_offsets = np.concatenate([[0], np.cumsum(lengths)])
    num_tokens = int(doc_offsets[-1])
    n_blocks = num_tokens // block_size
    if n_blocks == 0:
        raise _too_short(split, num_tokens, block_size)
    num_bytes = int(pc.sum(tokenized.data.column("num_bytes")).as_py())
    logger.info(
        "%s: %d documents, %d bytes, %d tokens (%.3f bytes/token) -> %d blocks of %d, last %d tokens dropped",
        split, tokenized.num_rows, num_bytes, num_tokens, num_bytes / num_tokens, n_blocks, block_size,
        num_tokens - n_blocks * block_size,
    )  # fmt: skip

    fingerprint = Hasher.hash(["pack", _CACHE_VERSION, tokenized._fingerprint, block_size, document_masking])
    packed = tokenized.with_format("arrow").map(
        _pack_batch,
        batched=True,
        batch_size=_BATCH_SIZE,
        with_indices=True,
        num_proc=num_proc,
        remove_columns=tokenized.column_names,
        features=MASKED_FEATURES if document_masking else PACKED_FEATURES,
        fn_kwargs={"source": tokenized, "doc_offsets": doc_offsets, "block_size": block_size, "n_blocks": n_blocks,
                   "document_masking": document_masking},
        new_fingerprint=fingerprint,
        cache_file_name=_cache_file(cache_dir, "packed", fingerprint),
        load_from_cache_file=load_from_cache_file,
        desc=f"Packing {split} into blocks of {block_size}",
    )
    return packed.with_format(None)


def tokenize_and_pack(
    raw: DatasetDict | IterableDatasetDict,
    tokenizer,
    block_size: int,
    text_column_name: str = "text",
    max_length: int | None = None,
    num_proc: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    load_from_cache_file: bool = True,
    document_masking: bool = False,
) -> DatasetDict | IterableDatasetDict:
    """Documents -> blocks of `block_size` tokens with `input_ids`, `labels` (equal to input_ids) and `num_bytes`.

    Args:
        raw: splits of documents, as returned by `load_text_dataset`.
        tokenizer: a tokenizer with an eos token, appended after every document.
        block_size: tokens per block (the training sequence length).
        text_column_name: the column holding the text.
        max_length: the model's maximum length (`max_position_embeddings`); a longer block_size is refused.
        num_proc: processes for tokenising and packing map-style datasets.
        cache_dir: where to write the map-style caches; by default next to the source dataset's cache files
            (an in-memory source then is not cached).
        load_from_cache_file: reuse a cached result of the same data, tokenizer and block_size.
        document_masking: add `position_ids` that restart at every document, so that a model whose masks come
            from transformers' `create_causal_mask` does not attend across documents within a block.

    Map-style splits are checked and built here, so that an unusable split fails before training; for
    streaming splits, the first block of each is read here for the same reason, the rest lazily.
    """
    _check_block_size(block_size, max_length)
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"{type(tokenizer).__name__} has no eos token; set tokenizer.eos_token so documents can be separated."
        )
    if isinstance(raw, IterableDatasetDict):
        packed = IterableDatasetDict()
        for split, dataset in raw.items():
            packed[split] = IterableDataset.from_generator(
                _stream_blocks,
                features=MASKED_FEATURES if document_masking else PACKED_FEATURES,
                gen_kwargs={
                    "raw": dataset,
                    "tokenizer": tokenizer,
                    "text_column_name": text_column_name,
                    "eos_token_id": tokenizer.eos_token_id,
                    "block_size": block_size,
                    "split": split,
                    "document_masking": document_masking,
                },
            )
            next(iter(packed[split]))  # raises the split's error now rather than during training
        return packed
    if not isinstance(raw, DatasetDict):
        raise TypeError(
            f"raw must be a DatasetDict or IterableDatasetDict (from load_text_dataset), not {type(raw).__name__}."
        )
    return DatasetDict(
        {
            split: _tokenize_and_pack_split(
                dataset, split, tokenizer, block_size, text_column_name, num_proc, cache_dir, load_from_cache_file,
                document_masking,
            )
            for split, dataset in raw.items()
        }
    )


# ---------------------------------------------------------------------------------------------------------------
# Bytes per token, for bits per byte
# ---------------------------------------------------------------------------------------------------------------


def count_bytes_and_tokens(blocks: Dataset | IterableDataset) -> tuple[int, int]:
    """(UTF-8 bytes, tokens) covered by packed blocks; reads a streaming split to its end."""
    num_bytes = num_tokens = 0
    for batch in blocks.with_format("arrow").iter(batch_size=_BATCH_SIZE):
        num_bytes += pc.sum(batch.column("num_bytes")).as_py() or 0
        num_tokens += pc.sum(pc.list_value_length(batch.column("input_ids"))).as_py() or 0
    return num_bytes, num_tokens


def bytes_per_token(blocks: Dataset | IterableDataset) -> float:
    """Average UTF-8 bytes per token over packed blocks (e.g. the validation split the loss is measured on)."""
    num_bytes, num_tokens = count_bytes_and_tokens(blocks)
    if num_tokens == 0:
        raise ValueError("No blocks to count bytes per token over.")
    return num_bytes / num_tokens
