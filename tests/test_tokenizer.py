"""The bundled byte-level BPE tokenizer and `train_tokenizer`: lossless, special tokens, batching,
save/load, determinism, and a clear error for each bad input."""

import hashlib
import json
import unicodedata

import datasets
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerFast

import hf_custom_lm.training.tokenization as tokenization
from hf_custom_lm.cli import main as cli_main
from hf_custom_lm.training.tokenization import TOKENIZER_DIR, bundled_corpus_files, load_tokenizer, train_tokenizer

EOT, PAD = "<|endoftext|>", "<|pad|>"
SMALL_CORPUS = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.\n"
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"
    "def tokenize(text):\n    return text.split()  # naïve\n"
) * 20


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture
def small_corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(SMALL_CORPUS, encoding="utf-8")
    return path


# ----------------------------------------------------------------- the bundled tokenizer


def test_bundled_tokenizer_loads_with_autotokenizer_as_a_plain_fast_tokenizer(tok):
    assert isinstance(tok, PreTrainedTokenizerFast)
    config = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "TokenizersBackend" and "auto_map" not in config  # no custom code
    assert len(tok) == tok.vocab_size == 8192
    assert (tok.eos_token, tok.eos_token_id, tok.bos_token_id, tok.pad_token, tok.pad_token_id) == (EOT, 0, 0, PAD, 1)
    assert tok.clean_up_tokenization_spaces is False
    assert tok.split_special_tokens is True
    assert tok.padding_side == "right"
    assert tok.model_max_length == 1024


def test_bundled_tokenizer_has_every_byte_and_no_normalizer(tok):
    backend = json.loads(tok.backend_tokenizer.to_str())
    assert backend["normalizer"] is None
    assert backend["pre_tokenizer"] == {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    vocab = tok.get_vocab()
    from tokenizers.pre_tokenizers import ByteLevel

    assert set(ByteLevel.alphabet()) <= set(vocab)


EDGE_STRINGS = st.one_of(
    st.text(),  # any code point but surrogates
    st.text(alphabet=st.characters(max_codepoint=127)),  # ASCII, control characters included
    st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)),  # CJK ideographs
    st.text(alphabet=st.sampled_from("😀👍🏽👨‍👩‍👧🇫🇷\u200d\ufe0f")),  # emoji, modifiers and joiners
    st.text(alphabet=st.sampled_from("aeo\u0301\u0308\u0327\u20dd")),  # combining marks
    st.text(alphabet=st.sampled_from(" \t\n\r\x0b\x0c\u00a0\u3000"), max_size=300),  # whitespace runs
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=EDGE_STRINGS)
@example(text="")
@example(text=" " * 1000 + "x" + "\n" * 50)
@example(text="e\u0301 vs \u00e9, ﬁ vs fi, ２ vs 2")
@example(text="\x00\x01\x7f\ufeff")
@example(text=f"plain {EOT} and {PAD} typed by a user")
def test_decode_of_encode_is_the_identity(tok, text):
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text


def test_validation_documents_round_trip_losslessly(tok):
    corpus = datasets.load_dataset("json", data_files={"validation": str(bundled_corpus_files()["validation"])})
    texts = list(corpus["validation"]["text"])
    batch = tok(texts)["input_ids"]
    assert tok.batch_decode(batch) == texts


def test_encoding_adds_no_special_tokens(tok):
    assert tok("Hello world")["input_ids"] == tok("Hello world", add_special_tokens=False)["input_ids"]
    assert 0 not in tok("Hello world")["input_ids"]


# ----------------------------------------------------------------- special tokens


def test_special_token_text_in_plain_input_is_not_a_special_id(tok):
    ids = tok(f"a{EOT}b{PAD}c")["input_ids"]
    assert tok.eos_token_id not in ids and tok.pad_token_id not in ids
    assert tok.decode(ids) == f"a{EOT}b{PAD}c"
    assert tok.decode(ids, skip_special_tokens=True) == f"a{EOT}b{PAD}c"  # user text is never dropped


def test_special_tokens_become_single_ids_when_asked(tok):
    ids = tok(f"a{EOT}b{PAD}c", split_special_tokens=False)["input_ids"]
    assert ids == tok("a")["input_ids"] + [0] + tok("b")["input_ids"] + [1] + tok("c")["input_ids"]
    assert tok.decode(ids) == f"a{EOT}b{PAD}c"
    assert tok.decode(ids, skip_special_tokens=True) == "abc"
    assert tok.convert_tokens_to_ids([EOT, PAD]) == [0, 1]
    # asking once does not change the default for the next call
    assert 0 not in tok(EOT)["input_ids"]


# ----------------------------------------------------------------- batching, padding, truncation


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_side_puts_pad_ids_and_zero_mask_on_that_side(tok, side):
    texts = ["short", "a much longer sentence than the first one"]
    batch = tok(texts, padding=True, padding_side=side, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.dtype == torch.long and ids.shape == mask.shape
    n_short = len(tok("short")["input_ids"])
    assert ids.shape[1] == len(tok(texts[1])["input_ids"]) > n_short
    pads = ids.shape[1] - n_short
    pad_part = slice(n_short, None) if side == "right" else slice(0, pads)
    text_part = slice(0, n_short) if side == "right" else slice(pads, None)
    assert ids[0, pad_part].eq(tok.pad_token_id).all() and mask[0, pad_part].eq(0).all()
    assert ids[0, text_part].tolist() == tok("short")["input_ids"] and mask[0, text_part].eq(1).all()
    assert mask[1].eq(1).all()


def test_truncation_cuts_to_max_length_and_defaults_to_model_max_length(tok):
    text = "word " * 3000
    assert len(tok(text, truncation=True, max_length=8)["input_ids"]) == 8
    assert len(tok(text, truncation=True)["input_ids"]) == tok.model_max_length
    left = load_tokenizer(truncation_side="left")(text, truncation=True, max_length=8)["input_ids"]
    assert left == tok(text)["input_ids"][-8:] != tok(text)["input_ids"][:8]


def test_batch_encoding_equals_one_by_one(tok):
    texts = ["Emma Woodhouse, handsome, clever, and rich", "床前明月光", "", "x = 1  # comment"]
    assert tok(texts)["input_ids"] == [tok(t)["input_ids"] for t in texts]


def test_save_and_reload_keeps_vocab_merges_specials_and_padding_side(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    original_json = json.loads(tok.backend_tokenizer.to_str())
    reloaded = AutoTokenizer.from_pretrained(tmp_path, padding_side="left")
    assert reloaded.padding_side == "left"
    reloaded.save_pretrained(tmp_path / "again")
    again = AutoTokenizer.from_pretrained(tmp_path / "again")
    for loaded in (reloaded, again):
        assert loaded.get_vocab() == tok.get_vocab()
        loaded_json = json.loads(loaded.backend_tokenizer.to_str())
        assert loaded_json["model"]["merges"] == original_json["model"]["merges"]
        assert loaded_json["added_tokens"] == original_json["added_tokens"]
        assert (loaded.eos_token_id, loaded.pad_token_id, loaded.split_special_tokens) == (0, 1, True)
        assert loaded.clean_up_tokenization_spaces is False
    assert again.padding_side == "left"  # saved in tokenizer_config.json
    assert again(SMALL_CORPUS)["input_ids"] == tok(SMALL_CORPUS)["input_ids"]


# ----------------------------------------------------------------- training


def test_training_twice_gives_byte_identical_tokenizer_json(small_corpus, tmp_path):
    # across processes (other hash seeds): test_bundled_tokenizer_is_reproduced_from_the_bundled_corpus
    train_tokenizer(files=small_corpus, vocab_size=400, output_dir=tmp_path / "a")
    train_tokenizer(files=[small_corpus], vocab_size=400, output_dir=tmp_path / "b")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_trained_tokenizer_round_trips_through_autotokenizer(small_corpus, tmp_path):
    trained = train_tokenizer(files=small_corpus, vocab_size=400, model_max_length=64, output_dir=tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert len(loaded) == len(trained) <= 400
    assert len(trained) > 256 + 2  # merges were learned
    assert loaded.model_max_length == 64
    assert loaded(SMALL_CORPUS)["input_ids"] == trained(SMALL_CORPUS)["input_ids"]
    assert loaded.decode(loaded(SMALL_CORPUS)["input_ids"]) == SMALL_CORPUS
    assert len(loaded(SMALL_CORPUS)["input_ids"]) < len(SMALL_CORPUS.encode("utf-8")) / 2  # merges compress


def test_vocabulary_never_exceeds_vocab_size_and_min_frequency_limits_merges(small_corpus):
    big = train_tokenizer(files=small_corpus, vocab_size=2000, min_frequency=2)
    rare = train_tokenizer(files=small_corpus, vocab_size=2000, min_frequency=10**6)
    assert 256 + 2 < len(big) <= 2000
    assert len(rare) == 256 + 2  # no pair is frequent enough


def test_training_on_a_dataset_an_iterable_dataset_and_a_list_of_strings_agree():
    lines = SMALL_CORPUS.splitlines(keepends=True)
    dataset = datasets.Dataset.from_dict({"body": lines, "other": list(range(len(lines)))})
    from_list = train_tokenizer(dataset=lines, vocab_size=400).backend_tokenizer.to_str()
    assert train_tokenizer(dataset=dataset, text_column="body", vocab_size=400).backend_tokenizer.to_str() == from_list
    streamed = dataset.to_iterable_dataset(num_shards=2)
    assert train_tokenizer(dataset=streamed, text_column="body", vocab_size=400).backend_tokenizer.to_str() == from_list


def test_nfc_normalization_composes_and_is_the_documented_exception_to_lossless(small_corpus):
    nfc = train_tokenizer(files=small_corpus, vocab_size=300, normalization="NFC")
    nfkc = train_tokenizer(files=small_corpus, vocab_size=300, normalization="NFKC")
    raw = train_tokenizer(files=small_corpus, vocab_size=300)
    text = "cafe\u0301 ﬁ ２"
    assert nfc.decode(nfc(text)["input_ids"]) == unicodedata.normalize("NFC", text) == "café ﬁ ２"
    assert nfkc.decode(nfkc(text)["input_ids"]) == unicodedata.normalize("NFKC", text) == "café fi 2"
    assert raw.decode(raw(text)["input_ids"]) == text


def test_additional_special_tokens_get_the_next_ids_and_stay_whole_when_asked(small_corpus, tmp_path):
    train_tokenizer(files=small_corpus, vocab_size=300, additional_special_tokens=["<|user|>"], output_dir=tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.convert_tokens_to_ids("<|user|>") == 2
    assert loaded("<|user|>hi", split_special_tokens=False)["input_ids"][0] == 2
    assert 2 not in loaded("<|user|>hi")["input_ids"]


# ----------------------------------------------------------------- bad input


def test_missing_file_raises_file_not_found_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_tokenizer(files=[tmp_path / "nope.txt"], vocab_size=300)


def test_empty_file_raises_naming_it(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.txt.*is empty"):
        train_tokenizer(files=tmp_path / "empty.txt", vocab_size=300)


def test_no_text_at_all_raises():
    with pytest.raises(ValueError, match="training text is empty"):
        train_tokenizer(dataset=["", ""], vocab_size=300)
    with pytest.raises(ValueError, match="empty list"):
        train_tokenizer(files=[], vocab_size=300)


@pytest.mark.parametrize("block", [3, 1 << 20])  # a small block cuts characters across reads
def test_non_utf8_file_raises_naming_the_file_and_byte_offset(tmp_path, monkeypatch, block):
    monkeypatch.setattr(tokenization, "_READ_BLOCK", block)
    good = "naïve café 中文\n".encode()
    (tmp_path / "latin1.txt").write_bytes(good * 3 + "déjà".encode("latin-1") + b"\n")
    offset = len(good) * 3 + 1  # the latin-1 é
    with pytest.raises(ValueError, match=rf"latin1\.txt.*not valid UTF-8 at byte offset {offset} \(byte 0xe9"):
        train_tokenizer(files=tmp_path / "latin1.txt", vocab_size=300)


def test_utf8_reader_returns_the_file_exactly_whatever_the_block_size(tmp_path, monkeypatch):
    text = "第一行\n" + "x" * 50 + "é" * 7 + "\n\nno final newline 😀"
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    for block in (1, 2, 5, 64, 1 << 20):
        monkeypatch.setattr(tokenization, "_READ_BLOCK", block)
        assert "".join(tokenization._read_utf8(tmp_path / "t.txt")) == text


@pytest.mark.parametrize("vocab_size", [0, 100, 257, 8.5, True])
def test_vocab_size_below_bytes_plus_specials_raises_naming_the_value(small_corpus, vocab_size):
    with pytest.raises(ValueError, match=rf"vocab_size={vocab_size!r}.*at least 258"):
        train_tokenizer(files=small_corpus, vocab_size=vocab_size)


def test_smallest_vocab_size_is_accepted(small_corpus):
    assert len(train_tokenizer(files=small_corpus, vocab_size=258)) == 258


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(min_frequency=-1), "min_frequency=-1"),
        (dict(normalization="NFD"), "normalization='NFD'"),
        (dict(model_max_length=0), "model_max_length=0"),
        (dict(additional_special_tokens=[EOT]), "must be distinct"),
        (dict(additional_special_tokens=[""]), "non-empty"),
    ],
)
def test_bad_settings_raise_naming_the_value(small_corpus, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        train_tokenizer(files=small_corpus, vocab_size=300, **kwargs)


def test_bad_sources_raise_clear_errors(small_corpus):
    with pytest.raises(ValueError, match="exactly one of"):
        train_tokenizer(vocab_size=300)
    with pytest.raises(ValueError, match="exactly one of"):
        train_tokenizer(files=small_corpus, dataset=["x"], vocab_size=300)
    with pytest.raises(TypeError, match="Item 1 of `dataset` is int"):
        train_tokenizer(dataset=["text", 3], vocab_size=300)
    with pytest.raises(TypeError, match="single string or path"):
        train_tokenizer(dataset="a sentence", vocab_size=300)
    dataset = datasets.Dataset.from_dict({"content": ["a", "b"]})
    with pytest.raises(ValueError, match=r"no column 'text'.*\['content'\]"):
        train_tokenizer(dataset=dataset, vocab_size=300)
    with pytest.raises(ValueError, match="Row 1 of column 'content' is NoneType"):
        train_tokenizer(dataset=datasets.Dataset.from_dict({"content": ["a", None]}), text_column="content", vocab_size=300)
    with pytest.raises(ValueError, match=r"no column 'text'.*\['content'\]"):
        train_tokenizer(dataset=dataset.to_iterable_dataset(), vocab_size=300)


# ----------------------------------------------------------------- command line


def test_cli_trains_from_files_and_from_a_json_dataset(small_corpus, tmp_path, capsys):
    assert cli_main(["train-tokenizer", "--files", str(small_corpus), "--vocab_size", "300",
                     "--model_max_length", "32", "--output_dir", str(tmp_path / "files")]) == 0
    assert "with 300 tokens" in capsys.readouterr().out
    assert AutoTokenizer.from_pretrained(tmp_path / "files").model_max_length == 32

    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"body": line}) + "\n" for line in SMALL_CORPUS.splitlines(True)))
    assert cli_main(["train-tokenizer", "--dataset_name", "json", "--data_files", str(jsonl), "--text_column", "body",
                     "--vocab_size", "300", "--normalization", "NFKC", "--output_dir", str(tmp_path / "ds")]) == 0
    loaded = AutoTokenizer.from_pretrained(tmp_path / "ds")
    assert loaded.decode(loaded("ﬁ")["input_ids"]) == "fi"


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, capsys):
    assert cli_main(["train-tokenizer", "--files", str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path)]) == 2
    assert "missing.txt" in capsys.readouterr().err
    assert cli_main(["train-tokenizer", "--output_dir", str(tmp_path)]) == 2
    assert "exactly one of --files" in capsys.readouterr().err


@pytest.mark.slow
def test_bundled_tokenizer_is_reproduced_from_the_bundled_corpus(tmp_path):
    corpus = datasets.load_dataset("json", data_files={"train": str(bundled_corpus_files()["train"])})
    train_tokenizer(dataset=corpus["train"], vocab_size=8192, output_dir=tmp_path)
    digest = hashlib.sha256((tmp_path / "tokenizer.json").read_bytes()).hexdigest()
    assert digest == hashlib.sha256((TOKENIZER_DIR / "tokenizer.json").read_bytes()).hexdigest()
    assert (tmp_path / "tokenizer_config.json").read_text() == (TOKENIZER_DIR / "tokenizer_config.json").read_text()
