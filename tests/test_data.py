"""Loading, tokenising and packing text: every file type, held-out splits, exact packing, caching, streaming,
and a clear error for each kind of bad input. Nothing downloads; datasets' caches go to tmp_path."""

import bz2
import csv
import gzip
import json
import lzma
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict, IterableDatasetDict

from hf_custom_lm.training import data, packing
from hf_custom_lm.training.data import load_text_dataset
from hf_custom_lm.training.metrics import bits_per_byte
from hf_custom_lm.training.packing import (
    bytes_per_token,
    count_bytes_and_tokens,
    tokenize_and_pack,
    tokenizer_fingerprint,
)

from .conftest import SAMPLE_TEXT, build_tiny_tokenizer

# varied lengths, unicode, commas and quotes (csv), a multi-line document (txt paragraphs keep it whole)
DOCS = [f"Document {i}. {SAMPLE_TEXT[i % 4]}" for i in range(12)] + [
    'He said "stop, please", and the model stopped.',
    "first line of a poem\nsecond line of the poem",
    "短い文書。",
]
OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def write_docs(path, docs):
    """`docs` in the format named by `path`'s extension, one document per record (txt: blank-line separated)."""
    ext = data._extension(path)
    if ext == ".parquet":
        pq.write_table(pa.table({"text": docs, "id": list(range(len(docs)))}), path)
        return path
    with OPENERS.get(path.suffix, open)(path, "wt", encoding="utf-8", newline="") as f:
        if ext == ".txt":
            f.write("\n\n".join(docs))
        elif ext == ".jsonl":
            f.writelines(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(docs))
        elif ext == ".json":  # a JSON array, the other shape of .json
            json.dump([{"id": i, "text": d} for i, d in enumerate(docs)], f)
        elif ext == ".csv":
            writer = csv.writer(f)
            writer.writerow(["id", "text"])
            writer.writerows(enumerate(docs))
    return path


def texts(dataset):
    return [row["text"] for row in dataset]


def token_stream(docs, tokenizer):
    """The reference stream: each non-empty document's ids followed by eos, in order."""
    stream = []
    for doc in docs:
        if doc and not doc.isspace():
            stream += tokenizer(doc, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return stream


def reference_block_bytes(docs, tokenizer, block_size):
    """Per-block bytes from a token-by-token loop: token k of n in a b-byte document holds
    floor(b(k+1)/n) - floor(bk/n) bytes."""
    shares = []
    for doc in docs:
        if doc and not doc.isspace():
            n = len(tokenizer(doc, add_special_tokens=False)["input_ids"]) + 1
            b = len(doc.encode("utf-8"))
            shares += [b * (k + 1) // n - b * k // n for k in range(n)]
    n_blocks = len(shares) // block_size
    return [sum(shares[i * block_size : (i + 1) * block_size]) for i in range(n_blocks)]


def flat(blocks):
    return [t for row in blocks["input_ids"] for t in row]


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def bundled_files():
    try:
        from hf_custom_lm.training.tokenization import bundled_corpus_files

        return bundled_corpus_files()
    except (ImportError, FileNotFoundError):
        pytest.skip("the bundled corpus is not packaged yet")


# ---------------------------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["docs.txt", "docs.txt.gz", "docs.jsonl", "docs.jsonl.gz", "docs.jsonl.bz2", "docs.jsonl.xz",
             "docs.json", "docs.csv", "docs.parquet"],
)  # fmt: skip
def test_each_file_type_loads_every_document(tmp_path, cache, name):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    train = write_docs(tmp_path / "train" / name, DOCS)
    val = write_docs(tmp_path / "val" / name, DOCS[:3])
    raw = load_text_dataset(train_file=train, validation_file=val, sample_by="paragraph", cache_dir=cache)
    assert isinstance(raw, DatasetDict) and set(raw) == {"train", "validation"}
    assert texts(raw["train"]) == DOCS
    assert texts(raw["validation"]) == DOCS[:3]


def test_txt_default_is_one_document_per_file_in_a_folder(tmp_path, cache):
    corpus = tmp_path / "stories"
    (corpus / "part2").mkdir(parents=True)
    for i, doc in enumerate(DOCS[:4]):
        write_docs(corpus / ("part2" if i % 2 else "") / f"story{i}.txt", [doc + "\n\nThe end.\n"])
    (corpus / "README.md").write_text("not data")
    (corpus / ".hidden.txt").write_text("not data either")
    raw = load_text_dataset(train_file=corpus, validation_split_percentage=25, cache_dir=cache)
    loaded = sorted(texts(raw["train"]) + texts(raw["validation"]))
    assert loaded == sorted(doc + "\n\nThe end.\n" for doc in DOCS[:4])


@pytest.mark.parametrize(("sample_by", "expected"), [
    ("document", ["one a\none b\n\ntwo\n\n\nthree\n"]),
    ("paragraph", ["one a\none b", "two", "\nthree\n"]),
    ("line", ["one a", "one b", "", "two", "", "", "three"]),
])  # fmt: skip
def test_txt_sample_by_sets_the_document_unit(tmp_path, cache, sample_by, expected):
    path = tmp_path / "a.txt"
    path.write_text("one a\none b\n\ntwo\n\n\nthree\n")
    raw = load_text_dataset(train_file=path, validation_file=path, sample_by=sample_by, cache_dir=cache)
    assert texts(raw["train"]) == expected


def test_a_list_of_files_and_folders_is_one_split(tmp_path, cache):
    write_docs(tmp_path / "a.jsonl", DOCS[:5])
    (tmp_path / "more").mkdir()
    write_docs(tmp_path / "more" / "b.jsonl.gz", DOCS[5:])
    raw = load_text_dataset(
        train_file=[tmp_path / "a.jsonl", str(tmp_path / "more")], validation_file=tmp_path / "a.jsonl", cache_dir=cache
    )
    assert texts(raw["train"]) == DOCS


def test_held_out_validation_is_seeded_disjoint_and_complete(tmp_path):
    docs = [f"document number {i}" for i in range(40)]
    path = write_docs(tmp_path / "a.jsonl", docs)

    def split(seed, cache_name):
        raw = load_text_dataset(train_file=path, validation_split_percentage=10, seed=seed,
                                cache_dir=tmp_path / cache_name)  # fmt: skip
        return texts(raw["train"]), texts(raw["validation"])

    train, validation = split(0, "c1")
    assert len(validation) == 4 and sorted(train + validation) == sorted(docs)
    assert split(0, "c2") == (train, validation)  # fresh cache, same seed: same split
    assert sorted(split(1, "c3")[1]) != sorted(validation)


def test_streaming_held_out_validation_is_seeded_disjoint_and_complete(tmp_path):
    docs = [f"document number {i}" for i in range(200)]
    path = write_docs(tmp_path / "a.jsonl", docs)

    def split(seed):
        raw = load_text_dataset(train_file=path, streaming=True, validation_split_percentage=10, seed=seed)
        assert isinstance(raw, IterableDatasetDict)
        return texts(raw["train"]), texts(raw["validation"])

    train, validation = split(0)
    assert sorted(train + validation) == sorted(docs) and not set(train) & set(validation)
    assert 5 <= len(validation) <= 40  # about 10% of 200, by content hash
    assert split(0) == (train, validation)
    assert split(1)[1] != validation


def test_dataset_name_loads_a_dataset_folder_with_its_own_validation_split(tmp_path, cache):
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    write_docs(folder / "train.jsonl", DOCS[3:])
    write_docs(folder / "validation.jsonl", DOCS[:3])
    raw = load_text_dataset(dataset_name=str(folder), cache_dir=cache)
    assert texts(raw["train"]) == DOCS[3:] and texts(raw["validation"]) == DOCS[:3]


# ---------------------------------------------------------------------------------------------------------------
# tokenising and packing
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [2, 7, 64])
def test_blocks_concatenate_to_the_token_stream_minus_only_the_tail(
    tmp_path, cache, tokenizer, monkeypatch, block_size
):
    # small batches so that blocks span batch boundaries, and a long document spans several blocks and batches
    monkeypatch.setattr(packing, "_BATCH_SIZE", 3)
    docs = DOCS + ["", "   ", " ".join(SAMPLE_TEXT[:6])] + DOCS[::-1]
    path = write_docs(tmp_path / "a.jsonl", docs)
    raw = load_text_dataset(train_file=path, validation_file=path, cache_dir=cache)
    lm = tokenize_and_pack(raw, tokenizer, block_size)

    stream = token_stream(docs, tokenizer)
    kept = len(stream) // block_size * block_size
    blocks = lm["train"]
    assert blocks.column_names == ["input_ids", "labels", "num_bytes"]
    assert all(len(ids) == block_size for ids in blocks["input_ids"])
    assert flat(blocks) == stream[:kept] and len(stream) - kept < block_size
    assert blocks["labels"] == blocks["input_ids"]
    assert blocks["num_bytes"] == reference_block_bytes(docs, tokenizer, block_size)


def reference_positions(docs, tokenizer, block_size):
    """Per block, each token's index since its document or its block began, whichever is later."""
    in_document = []
    for doc in docs:
        if doc and not doc.isspace():
            in_document += range(len(tokenizer(doc, add_special_tokens=False)["input_ids"]) + 1)
    n_blocks = len(in_document) // block_size
    return [[min(k, j) for j, k in enumerate(in_document[i * block_size : (i + 1) * block_size])]
            for i in range(n_blocks)]


@pytest.mark.parametrize("block_size", [2, 7, 64])
def test_document_masking_adds_positions_that_restart_at_every_document(
    tmp_path, cache, tokenizer, monkeypatch, block_size
):
    monkeypatch.setattr(packing, "_BATCH_SIZE", 3)  # blocks span batches, as above
    docs = DOCS + ["", " ".join(SAMPLE_TEXT[:6])] + DOCS[::-1]
    path = write_docs(tmp_path / "a.jsonl", docs)
    raw = load_text_dataset(train_file=path, validation_file=path, cache_dir=cache)
    plain = tokenize_and_pack(raw, tokenizer, block_size)["train"]
    masked = tokenize_and_pack(raw, tokenizer, block_size, document_masking=True)["train"]
    assert masked.column_names == ["input_ids", "labels", "num_bytes", "position_ids"]
    assert masked.remove_columns("position_ids").to_dict() == plain.to_dict()  # its own cache entry
    assert masked["position_ids"] == reference_positions(docs, tokenizer, block_size)
    # a stream packs the same positions
    streamed = tokenize_and_pack(load_text_dataset(train_file=path, validation_file=path, streaming=True),
                                 tokenizer, block_size, document_masking=True)
    assert list(streamed["train"]) == masked.to_list()


def test_num_bytes_sum_to_the_utf8_size_of_the_text_when_nothing_is_dropped(tmp_path, cache, tokenizer):
    path = write_docs(tmp_path / "a.jsonl", DOCS)
    raw = load_text_dataset(train_file=path, validation_file=path, cache_dir=cache)
    num_tokens = len(token_stream(DOCS, tokenizer))
    lm = tokenize_and_pack(raw, tokenizer, num_tokens)  # one block holding the whole stream
    num_bytes = sum(len(d.encode("utf-8")) for d in DOCS)
    assert count_bytes_and_tokens(lm["validation"]) == (num_bytes, num_tokens)
    assert bytes_per_token(lm["validation"]) == pytest.approx(num_bytes / num_tokens)


def test_bundled_corpus_loads_every_document_and_counts_its_bytes(cache, tokenizer):
    path = bundled_files()["validation"]
    with gzip.open(path, "rt", encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for line in f]
    raw = load_text_dataset(train_file=path, validation_file=path, cache_dir=cache)
    assert texts(raw["validation"]) == docs
    # 2-token blocks: at most the final eos is dropped, with its share of the last document's bytes
    stream = token_stream(docs, tokenizer)
    dropped = len(stream) % 2
    b, n = len(docs[-1].encode("utf-8")), len(tokenizer(docs[-1], add_special_tokens=False)["input_ids"]) + 1
    text_bytes = sum(len(d.encode("utf-8")) for d in docs if d.strip())
    assert count_bytes_and_tokens(tokenize_and_pack(raw, tokenizer, 2)["validation"]) == (
        text_bytes - (b - b * (n - 1) // n if dropped else 0),
        len(stream) - dropped,
    )


def test_bits_per_byte_converts_nats_per_token():
    assert bits_per_byte(math.log(2), 1.0) == pytest.approx(1.0)
    assert bits_per_byte(2 * math.log(2), 4.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="bytes_per_token=0"):
        bits_per_byte(1.0, 0)


def test_parallel_tokenizing_gives_the_same_blocks(tmp_path, cache, tokenizer, monkeypatch):
    monkeypatch.setattr(packing, "_BATCH_SIZE", 4)
    path = write_docs(tmp_path / "a.jsonl", DOCS * 2)
    raw = load_text_dataset(train_file=path, validation_file=path, cache_dir=cache)
    serial = tokenize_and_pack(raw, tokenizer, 16)
    parallel = tokenize_and_pack(raw, tokenizer, 16, num_proc=2, load_from_cache_file=False)
    assert parallel["train"].to_dict() == serial["train"].to_dict()


def test_streaming_packs_lazily_into_the_same_blocks(tmp_path, cache, tokenizer, monkeypatch):
    monkeypatch.setattr(packing, "_BATCH_SIZE", 3)
    path = write_docs(tmp_path / "a.jsonl.gz", DOCS * 2)
    mapped = tokenize_and_pack(load_text_dataset(train_file=path, validation_file=path, cache_dir=cache), tokenizer, 8)
    raw = load_text_dataset(train_file=path, validation_file=path, streaming=True)
    streamed = tokenize_and_pack(raw, tokenizer, 8)
    assert isinstance(streamed, IterableDatasetDict)
    assert list(streamed["train"]) == mapped["train"].to_list()
    assert count_bytes_and_tokens(streamed["validation"]) == count_bytes_and_tokens(mapped["validation"])


def test_rerun_loads_tokenized_blocks_from_cache(tmp_path, cache, tokenizer, monkeypatch):
    calls = []
    real = packing._tokenize_batch
    monkeypatch.setattr(packing, "_tokenize_batch", lambda *a, **k: calls.append(1) or real(*a, **k))
    path = write_docs(tmp_path / "a.jsonl", DOCS)

    first = tokenize_and_pack(load_text_dataset(train_file=path, cache_dir=cache), tokenizer, 8)
    assert calls, "the first call must tokenize"
    calls.clear()
    # a fresh load and an equal but separately built tokenizer: what a rerun in a new process sees
    again = tokenize_and_pack(load_text_dataset(train_file=path, cache_dir=cache), _reloaded(tokenizer, tmp_path), 8)
    assert calls == []
    assert again["train"].cache_files == first["train"].cache_files
    assert again["train"].to_dict() == first["train"].to_dict()

    tokenize_and_pack(load_text_dataset(train_file=path, cache_dir=cache), tokenizer, 8, load_from_cache_file=False)
    assert calls, "load_from_cache_file=False must tokenize again"


def test_in_memory_dataset_is_cached_in_cache_dir(tmp_path, tokenizer, monkeypatch):
    calls = []
    real = packing._tokenize_batch
    monkeypatch.setattr(packing, "_tokenize_batch", lambda *a, **k: calls.append(1) or real(*a, **k))
    raw = DatasetDict({"train": Dataset.from_dict({"text": DOCS})})
    first = tokenize_and_pack(raw, tokenizer, 8, cache_dir=tmp_path / "tok")
    n_calls = len(calls)
    again = tokenize_and_pack(raw, tokenizer, 8, cache_dir=tmp_path / "tok")
    assert n_calls > 0 and len(calls) == n_calls
    assert again["train"].cache_files == first["train"].cache_files
    assert all(f["filename"].startswith(str(tmp_path / "tok")) for f in first["train"].cache_files)


def _reloaded(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path / "tokenizer")
    return AutoTokenizer.from_pretrained(tmp_path / "tokenizer")


def test_tokenizer_fingerprint_ignores_runtime_state_but_not_the_vocabulary(tmp_path, tokenizer):
    reloaded = _reloaded(tokenizer, tmp_path)
    before = tokenizer_fingerprint(reloaded)
    reloaded(["some text to cut"], truncation=True, max_length=2, padding="max_length")
    assert reloaded.backend_tokenizer.truncation is not None  # the state that would change a pickle-based hash
    assert tokenizer_fingerprint(reloaded) == before == tokenizer_fingerprint(tokenizer)
    assert tokenizer_fingerprint(build_tiny_tokenizer(vocab_size=300)) != before


# ---------------------------------------------------------------------------------------------------------------
# bad input: each a clear error before training
# ---------------------------------------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_text_dataset(train_file=tmp_path / "nope.jsonl")
    write_docs(tmp_path / "a.jsonl", DOCS)
    with pytest.raises(FileNotFoundError, match="validation_file.*missing.txt"):
        load_text_dataset(train_file=tmp_path / "a.jsonl", validation_file=tmp_path / "missing.txt")


def test_unsupported_extension_is_named_with_the_supported_list(tmp_path):
    (tmp_path / "notes.docx").write_text("text")
    with pytest.raises(ValueError, match=r"notes\.docx.*Supported: \.txt, \.json, \.jsonl, \.csv, \.parquet"):
        load_text_dataset(train_file=tmp_path / "notes.docx")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "README.md").write_text("text")
    with pytest.raises(ValueError, match=r"holds no data files.*README\.md"):
        load_text_dataset(train_file=tmp_path / "folder")


def test_mixed_file_types_in_one_split_are_refused(tmp_path):
    write_docs(tmp_path / "a.jsonl", DOCS)
    write_docs(tmp_path / "b.csv", DOCS)
    with pytest.raises(ValueError, match=r"mixes file types \['.csv', '.jsonl'\]"):
        load_text_dataset(train_file=tmp_path)


@pytest.mark.parametrize("streaming", [False, True])
def test_empty_data_is_refused(tmp_path, cache, tokenizer, streaming):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="empty.jsonl.*is empty"):
        load_text_dataset(train_file=tmp_path / "empty.jsonl", streaming=streaming)
    with gzip.open(tmp_path / "empty.jsonl.gz", "wt") as f:
        f.write("")
    with pytest.raises(ValueError, match=r"empty\.jsonl\.gz' is empty \(no records\)"):
        load_text_dataset(train_file=tmp_path / "empty.jsonl.gz", streaming=streaming, cache_dir=cache)
    (tmp_path / "blank.txt").write_text("\n\n  \n")
    raw = load_text_dataset(train_file=tmp_path / "blank.txt", validation_file=tmp_path / "blank.txt",
                            sample_by="line", streaming=streaming, cache_dir=cache)  # fmt: skip
    with pytest.raises(ValueError, match="The train split has no text"):
        tokenize_and_pack(raw, tokenizer, 8)


def test_one_document_holds_out_its_last_lines_for_validation(tmp_path, cache):
    lines = [f"line {i} of a single story" for i in range(40)]
    (tmp_path / "one.txt").write_text("\n".join(lines) + "\n")
    raw = load_text_dataset(train_file=tmp_path / "one.txt", validation_split_percentage=10, cache_dir=cache)
    train, validation = raw["train"][0]["text"], raw["validation"][0]["text"]
    assert train + validation == "\n".join(lines) + "\n"  # nothing lost, nothing shared
    assert validation.startswith("line ") and validation.count("\n") in (4, 5)  # ~10%, cut at a line break


@pytest.mark.parametrize("streaming", [False, True])
def test_data_shorter_than_one_block_says_how_short(tmp_path, cache, tokenizer, streaming):
    path = write_docs(tmp_path / "a.jsonl", DOCS[:2])
    num_tokens = len(token_stream(DOCS[:2], tokenizer))
    raw = load_text_dataset(train_file=path, validation_file=path, streaming=streaming, cache_dir=cache)
    with pytest.raises(ValueError, match=rf"has {num_tokens} tokens .* block_size={num_tokens + 1}.*--block_size"):
        tokenize_and_pack(raw, tokenizer, num_tokens + 1)
    assert len(list(tokenize_and_pack(raw, tokenizer, num_tokens)["train"])) == 1


@pytest.mark.parametrize("streaming", [False, True])
def test_missing_text_column_lists_the_columns(tmp_path, cache, tokenizer, streaming):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"content": d, "id": i}) + "\n" for i, d in enumerate(DOCS)))
    with pytest.raises(ValueError, match=r"no column 'text'; its columns are \['content', 'id'\].*--text_column_name"):
        load_text_dataset(train_file=path, streaming=streaming, cache_dir=cache)
    raw = load_text_dataset(train_file=path, text_column_name="content", streaming=streaming, cache_dir=cache)
    assert next(iter(raw["train"]))["content"] in DOCS
    with pytest.raises(ValueError, match=r"no column 'text'.*'content'.*--text_column_name"):
        tokenize_and_pack(raw, tokenizer, 8)
    with pytest.raises(ValueError, match=r"'id'.*not text"):
        load_text_dataset(train_file=path, text_column_name="id", streaming=streaming, cache_dir=cache)


def test_block_size_checks(tmp_path, cache, tokenizer):
    path = write_docs(tmp_path / "a.jsonl", DOCS)
    raw = load_text_dataset(train_file=path, validation_file=path, cache_dir=cache)
    with pytest.raises(ValueError, match=r"block_size=256 is longer than the model's maximum length 128.*--block_size"):
        tokenize_and_pack(raw, tokenizer, 256, max_length=128)
    assert len(tokenize_and_pack(raw, tokenizer, 128, max_length=128)["train"][0]["input_ids"]) == 128
    with pytest.raises(ValueError, match="block_size=1 must be an integer >= 2"):
        tokenize_and_pack(raw, tokenizer, 1)


def test_tokenizer_without_eos_is_refused(tmp_path, cache, tokenizer):
    path = write_docs(tmp_path / "a.jsonl", DOCS)
    raw = load_text_dataset(train_file=path, validation_file=path, cache_dir=cache)
    no_eos = build_tiny_tokenizer()
    no_eos.eos_token = None
    with pytest.raises(ValueError, match="has no eos token"):
        tokenize_and_pack(raw, no_eos, 8)


def test_conflicting_or_missing_sources_are_refused(tmp_path):
    path = write_docs(tmp_path / "a.jsonl", DOCS)
    with pytest.raises(ValueError, match="either dataset_name .* or train_file"):
        load_text_dataset(train_file=path, dataset_name="someone/corpus")
    with pytest.raises(ValueError, match="No training data"):
        load_text_dataset()
    with pytest.raises(ValueError, match="validation_file needs a train_file"):
        load_text_dataset(validation_file=path)
    with pytest.raises(ValueError, match="dataset_name .* brings its own splits"):
        load_text_dataset(dataset_name="someone/corpus", validation_file=path)
    with pytest.raises(ValueError, match="validation_split_percentage` must be between 0 and 100.*got 100"):
        load_text_dataset(train_file=path, validation_split_percentage=100)
    with pytest.raises(ValueError, match="sample_by='page'"):
        load_text_dataset(train_file=path, sample_by="page")
    with pytest.raises(ValueError, match="train_file is an empty list"):
        load_text_dataset(train_file=[])
    with pytest.raises(TypeError, match="DatasetDict or IterableDatasetDict"):
        tokenize_and_pack(Dataset.from_dict({"text": DOCS}), build_tiny_tokenizer(), 8)
