"""Byte-level BPE tokenizers: train one on your text, or load the one bundled with the package.

A tokenizer trained here is a plain `PreTrainedTokenizerFast` (`TokenizersBackend` in transformers
5.x) saved as `tokenizer.json` + `tokenizer_config.json`, so `AutoTokenizer.from_pretrained(folder)`
loads it without custom code.

Design, and what it guarantees:

- Lossless. The byte-level pre-tokenizer (GPT-2's split, no prefix space) and decoder cover all 256
  bytes, nothing is unknown, and `clean_up_tokenization_spaces=False` is saved, so
  `decode(encode(s)) == s` for every string, unless an optional Unicode normalization (NFC or NFKC)
  was asked for, in which case `decode(encode(s)) == normalize(s)`.
- Special tokens. `<|endoftext|>` (id 0) is the bos, eos and unk token and separates documents;
  `<|pad|>` (id 1) pads batches. Encoding adds no special token: the data pipeline appends
  `eos_token_id` after each document itself.
- Special tokens are never produced from plain text unless asked. The tokenizer is saved with
  `split_special_tokens=True`: a user's text that happens to contain the characters
  "<|endoftext|>" is encoded as ordinary bytes and decodes back to the same characters, so text
  cannot forge a document boundary. To turn the written form into the single special id, ask for it:
  `tokenizer(text, split_special_tokens=False)`. Special ids always decode to their text, and
  `decode(..., skip_special_tokens=True)` drops them.
- Deterministic. The same text and settings give a byte-identical `tokenizer.json`.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import datasets
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TOKENIZER_DIR = PACKAGE_DIR / "tokenizer"
CORPUS_DIR = PACKAGE_DIR / "corpus"

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
NORMALIZERS = {"NFC": normalizers.NFC, "NFKC": normalizers.NFKC}
NUM_BYTES = 256  # the byte-level alphabet every vocabulary starts from
_READ_BLOCK = 1 << 20  # bytes read at a time from a text file
_DATASET_BATCH = 1000  # rows read at a time from a datasets.Dataset


def load_tokenizer(**kwargs) -> PreTrainedTokenizerFast:
    """The bundled tokenizer (trained on the bundled corpus), via `AutoTokenizer.from_pretrained`."""
    return AutoTokenizer.from_pretrained(TOKENIZER_DIR, **kwargs)


def bundled_corpus_files() -> dict[str, Path]:
    """Paths of the bundled corpus splits, for `datasets.load_dataset("json", data_files=...)`.

    Each line is `{"id": ..., "source": ..., "text": ...}`, one document (a chapter, an article).
    """
    files = {split: CORPUS_DIR / f"{split}.jsonl.gz" for split in ("train", "validation")}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(
                f"The bundled corpus file {path} is missing; reinstall the package or rebuild it with "
                "`python scripts/build_corpus.py`."
            )
    return files


def train_tokenizer(
    files: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    dataset: Iterable[str] | None = None,
    *,
    vocab_size: int = 8192,
    min_frequency: int = 2,
    additional_special_tokens: Sequence[str] = (),
    normalization: str | None = None,
    model_max_length: int = 1024,
    text_column: str = "text",
    output_dir: str | os.PathLike | None = None,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on UTF-8 text files or on a dataset, and optionally save it.

    Args:
        files: one path or a list of paths of UTF-8 text files.
        dataset: instead of `files`, a `datasets.Dataset` or `datasets.IterableDataset` (its
            `text_column` is read) or any iterable of strings.
        vocab_size: size of the final vocabulary, the 256 byte tokens and the special tokens included.
        min_frequency: a pair of tokens seen fewer times than this is never merged.
        additional_special_tokens: special tokens after `<|endoftext|>` (id 0) and `<|pad|>` (id 1).
        normalization: None (lossless, the default), "NFC" or "NFKC" Unicode normalization.
        model_max_length: the longest sequence the tokenizer lets through when truncating.
        text_column: the column holding the text when `dataset` is a `datasets.Dataset`.
        output_dir: if given, the folder `save_pretrained` writes to.

    Returns:
        the trained tokenizer.
    """
    special_tokens = [EOS_TOKEN, PAD_TOKEN, *additional_special_tokens]
    _check_settings(vocab_size, min_frequency, special_tokens, normalization, model_max_length)
    texts = _texts(files, dataset, text_column)

    tokenizer = Tokenizer(models.BPE())
    if normalization is not None:
        tokenizer.normalizer = NORMALIZERS[normalization]()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, seen or not
        show_progress=False,
    )
    counter = _CountingIterator(texts)
    tokenizer.train_from_iterator(counter, trainer=trainer)
    if counter.characters == 0:
        raise ValueError("The training text is empty: pass files or a dataset that contain some text.")

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=list(additional_special_tokens) or None,
        model_max_length=model_max_length,
        padding_side="right",
        # decoding must never rewrite " ," as ","; 5.x ignores True for BPE, older releases applied it
        clean_up_tokenization_spaces=False,
        split_special_tokens=True,  # see the module docstring
    )
    if output_dir is not None:
        fast.save_pretrained(output_dir)
    return fast


def _check_settings(vocab_size, min_frequency, special_tokens, normalization, model_max_length):
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < NUM_BYTES + len(special_tokens):
        raise ValueError(
            f"vocab_size={vocab_size!r} must be an integer of at least {NUM_BYTES + len(special_tokens)}: a "
            f"byte-level BPE holds {NUM_BYTES} byte tokens plus {len(special_tokens)} special tokens before any "
            "merge. The bundled tokenizer uses 8192."
        )
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 0:
        raise ValueError(f"min_frequency={min_frequency!r} must be an integer >= 0 (2 is usual).")
    if normalization is not None and normalization not in NORMALIZERS:
        raise ValueError(
            f"normalization={normalization!r} is not supported: use None (lossless), "
            + " or ".join(repr(n) for n in NORMALIZERS)
            + "."
        )
    if isinstance(model_max_length, bool) or not isinstance(model_max_length, int) or model_max_length < 1:
        raise ValueError(f"model_max_length={model_max_length!r} must be a positive integer, e.g. 1024.")
    if len(set(special_tokens)) != len(special_tokens) or not all(isinstance(t, str) and t for t in special_tokens):
        raise ValueError(
            f"additional_special_tokens={special_tokens[2:]!r} must be distinct, non-empty strings other "
            f"than {EOS_TOKEN!r} and {PAD_TOKEN!r}."
        )


def _texts(files, dataset, text_column) -> Iterator[str]:
    """The training text as an iterator of strings, with its sources checked before training starts."""
    if (files is None) == (dataset is None):
        raise ValueError("Pass exactly one of `files` (paths of UTF-8 text files) or `dataset` (a "
                         "datasets.Dataset or an iterable of strings).")
    if files is not None:
        paths = [Path(files)] if isinstance(files, (str, os.PathLike)) else [Path(f) for f in files]
        if not paths:
            raise ValueError("`files` is an empty list: pass at least one UTF-8 text file.")
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"Training file {str(path)!r} does not exist (or is not a file).")
            if path.stat().st_size == 0:
                raise ValueError(f"Training file {str(path)!r} is empty: remove it from `files` or give it text.")
        return (chunk for path in paths for chunk in _read_utf8(path))
    if isinstance(dataset, (str, bytes, os.PathLike)):
        raise TypeError(
            f"dataset={dataset!r} is a single string or path; pass paths as `files=[...]` and texts as a "
            "list of strings."
        )
    if isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        return _dataset_texts(dataset, text_column)
    return _checked_strings(dataset)


def _read_utf8(path: Path) -> Iterator[str]:
    """Stream a UTF-8 file as text ending at line breaks; a bad byte raises naming the file and its offset."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    offset, carry = 0, ""
    with open(path, "rb") as handle:
        while True:
            block = handle.read(_READ_BLOCK)
            # err.object is the held-back bytes of a character cut by the previous block + this block
            pending = len(decoder.getstate()[0])
            try:
                text = carry + decoder.decode(block, final=not block)
            except UnicodeDecodeError as err:
                position = offset - pending + err.start
                raise ValueError(
                    f"Training file {str(path)!r} is not valid UTF-8 at byte offset {position} "
                    f"(byte 0x{err.object[err.start]:02x}: {err.reason}). Convert it to UTF-8 first, e.g. "
                    "`iconv -f latin1 -t utf-8`."
                ) from None
            offset += len(block)
            if not block:
                if text:
                    yield text
                return
            cut = text.rfind("\n") + 1
            if cut:
                yield text[:cut]
            carry = text[cut:]
            if len(carry) > _READ_BLOCK:  # a very long line: hand it over in pieces rather than hold it
                yield carry
                carry = ""


def _dataset_texts(dataset, text_column: str) -> Iterator[str]:
    # an IterableDataset may not know its columns before the first row (column_names is None)
    if dataset.column_names is not None and text_column not in dataset.column_names:
        raise ValueError(
            f"The dataset has no column {text_column!r}; its columns are {dataset.column_names}. "
            "Pass `text_column=` naming the one that holds the text."
        )
    if isinstance(dataset, datasets.Dataset):
        column = dataset.select_columns([text_column])
        texts = (t for start in range(0, len(column), _DATASET_BATCH)
                 for t in column[start : start + _DATASET_BATCH][text_column])
    else:
        texts = (_column_of(example, text_column) for example in dataset)
    return _checked_rows(texts, text_column)


def _checked_rows(texts: Iterable, text_column: str) -> Iterator[str]:
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"Row {row} of column {text_column!r} is {type(text).__name__}, not a string.")
        yield text


def _column_of(example: dict, text_column: str):
    if text_column not in example:
        raise ValueError(
            f"The dataset has no column {text_column!r}; its columns are {list(example)}. "
            "Pass `text_column=` naming the one that holds the text."
        )
    return example[text_column]


def _checked_strings(texts: Iterable[str]) -> Iterator[str]:
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"Item {index} of `dataset` is {type(text).__name__}, not a string.")
        yield text


class _CountingIterator:
    """Passes strings through and counts their characters, so empty input can be reported."""

    def __init__(self, texts: Iterator[str]):
        self.texts = texts
        self.characters = 0

    def __iter__(self):
        for text in self.texts:
            self.characters += len(text)
            yield text
