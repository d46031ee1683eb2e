"""Load a text corpus, tokenise it and pack the token stream into fixed-length blocks for causal-LM training.

The behaviour follows `transformers`' `examples/pytorch/language-modeling/run_clm.py`, as library functions:

    raw = load_text_dataset(train_file="corpus/")           # DatasetDict {"train", "validation"} of documents
    lm = tokenize_and_pack(raw, tokenizer, block_size=512)  # DatasetDict of blocks: input_ids, labels, num_bytes
    bits_per_byte(eval_loss, bytes_per_token(lm["validation"]))

Decisions a user can rely on:

- Documents. A row of the text column is one document. For `.txt` files the default is `sample_by="document"`:
  a whole file is one document, so a folder of stories gives one end-of-text per story; `"paragraph"` (blocks
  separated by a blank line) suits one large file of many short texts, `"line"` one document per line.
  Empty and whitespace-only documents (blank lines, empty cells, nulls) are skipped.
- Token stream. Every document is tokenised without special tokens and followed by the tokenizer's eos id,
  so the model learns where texts end. The documents of a split are concatenated in order and cut into
  blocks of `block_size`; a block may span documents. Only the final `< block_size` tokens of each split are
  dropped (run_clm drops a remainder per batch of 1000 documents instead). With `document_masking` (training's
  default) each block also carries `position_ids` that restart at every document, and no token attends to
  another document.
- Held-out validation. Without a validation file (or a dataset "validation" split), `validation_split_percentage`
  percent of the training documents are held out: an exact, seeded random subset for map-style datasets; for
  streaming ones, the documents whose seeded content hash falls in that percentage (about that fraction, and
  identical texts always land on the same side).
- Bits per byte. Each block carries `num_bytes`, the UTF-8 bytes of the text its tokens stand for: a document's
  bytes are spread evenly over its tokens (eos included), so sums over whole documents are exact. Then
  `bpb = loss_nats_per_token / bytes_per_token / ln 2` for any subset of blocks.
- Caching. Map-style results are cached by `datasets` under a fingerprint computed here from the source
  dataset's fingerprint, the tokenizer's serialised form and the packing arguments, so a rerun with the same
  data and tokenizer loads the blocks instead of tokenising again. Streaming datasets are tokenised and packed
  lazily while they are read.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict, load_dataset
from datasets.exceptions import DatasetGenerationError

from .arguments import check_validation_split_percentage

logger = logging.getLogger(__name__)

# file extension -> `datasets` packaged builder
SUPPORTED_EXTENSIONS = {".txt": "text", ".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
# compressions `datasets` decompresses on the fly, streaming or not, with the standard library alone
COMPRESSION_EXTENSIONS = (".gz", ".bz2", ".xz")
TXT_SAMPLE_BY = ("document", "paragraph", "line")

PathArg = str | os.PathLike | Sequence[str | os.PathLike]


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------


def _supported_list() -> str:
    compressed = "/".join(COMPRESSION_EXTENSIONS)
    return f"{', '.join(SUPPORTED_EXTENSIONS)} (optionally compressed as {compressed})"


def _describe(paths: PathArg | list[Path]) -> str:
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    return ", ".join(repr(str(p)) for p in items)


def _extension(path: Path) -> str:
    """`.jsonl` for `a.jsonl` and `a.jsonl.gz`; the data extension below any compression suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_EXTENSIONS:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def resolve_files(paths: PathArg, argument: str) -> list[Path]:
    """Files named by `paths` (files and folders; folders searched recursively, hidden entries skipped)."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ValueError(f"{argument} is an empty list; pass at least one file or folder.")
    files: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{argument}: no such file or folder: {str(path)!r}")
        if path.is_file():
            if _extension(path) not in SUPPORTED_EXTENSIONS:
                raise ValueError(
                    f"{argument}: unsupported file type {path.name!r} "
                    f"(extension {''.join(path.suffixes) or 'none'!r}). Supported: {_supported_list()}."
                )
            files.append(path)
            continue
        found = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        data = [p for p in found if _extension(p) in SUPPORTED_EXTENSIONS]
        ignored = [str(p.relative_to(path)) for p in found if _extension(p) not in SUPPORTED_EXTENSIONS]
        if not data:
            raise ValueError(
                f"{argument}: folder {str(path)!r} holds no data files (found: {ignored or 'nothing'}). "
                f"Supported: {_supported_list()}."
            )
        if ignored:
            logger.warning("%s: ignoring files of unsupported type in %s: %s", argument, path, ignored)
        files.extend(data)
    for file in files:
        if file.stat().st_size == 0:
            raise ValueError(f"{argument}: file {str(file)!r} is empty.")
    return files


def read_dataset(sources: Sequence, *args, **kwargs) -> Dataset | IterableDataset | DatasetDict:
    """`datasets.load_dataset(*args, **kwargs)`, naming `sources` when their text cannot be parsed (binary, not
    UTF-8, broken JSON): `datasets` only says "An error occurred while generating the dataset"."""
    try:
        return load_dataset(*args, **kwargs)
    except DatasetGenerationError as error:
        names = ", ".join(dict.fromkeys(repr(str(source)) for source in sources))
        raise ValueError(
            f"Could not read the text of {names} ({error.__cause__ or error}). Text files must be UTF-8 "
            "(.txt, .json/.jsonl with a text field, .csv)."
        ) from error


def _load_split(
    files: list[Path], split: str, argument: str, sample_by: str, streaming: bool, cache_dir: str | None
) -> Dataset | IterableDataset:
    builders = {SUPPORTED_EXTENSIONS[_extension(f)] for f in files}
    if len(builders) > 1:
        kinds = sorted({_extension(f) for f in files})
        raise ValueError(
            f"{argument} mixes file types {kinds}; one split must be a single type (convert the files, "
            "or keep one type per folder)."
        )
    builder = builders.pop()
    kwargs = {"sample_by": sample_by} if builder == "text" else {}
    try:
        return read_dataset(
            files,
            builder,
            data_files={split: [str(f) for f in files]},
            split=split,
            streaming=streaming,
            cache_dir=cache_dir,
            **kwargs,
        )
    except StopIteration:  # the json builder's answer to a file with no records
        raise ValueError(f"{argument}: {_describe(files)} is empty (no records).") from None


def _in_validation(text: str | None, seed: int, percentage: float) -> bool:
    """Seeded content hash -> [0, 100); the document is held out when it falls below `percentage`."""
    digest = hashlib.blake2b((text or "").encode("utf-8"), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "big") % 1_000_000 < percentage * 10_000


def _hold_out_validation(
    train: Dataset | IterableDataset, text_column_name: str, percentage: float, seed: int
) -> tuple[Dataset | IterableDataset, Dataset | IterableDataset]:
    if isinstance(train, IterableDataset):
        is_validation = lambda example: _in_validation(example[text_column_name], seed, percentage)  # noqa: E731
        return train.filter(lambda ex: not is_validation(ex)), train.filter(is_validation)
    if train.num_rows < 2:
        return _hold_out_tail(train, text_column_name, percentage)
    split = train.train_test_split(test_size=percentage / 100, seed=seed, shuffle=True)
    return split["train"], split["test"]


def _hold_out_tail(train: Dataset, text_column_name: str, percentage: float) -> tuple[Dataset, Dataset]:
    """One document (a single .txt file): its last `percentage` percent, cut at a line break, is the validation
    text, so a single file trains without a validation file."""
    text = train[0][text_column_name] or ""
    cut = int(len(text) * (1 - percentage / 100))
    line_break = text.rfind("\n", 0, cut)
    cut = line_break + 1 if line_break > 0 else cut
    logger.info("One training document: holding out its last %d characters (%g%%) for validation.", len(text) - cut,
                percentage)
    return Dataset.from_dict({text_column_name: [text[:cut]]}), Dataset.from_dict({text_column_name: [text[cut:]]})


def check_text_column(dataset: Dataset | IterableDataset, text_column_name: str, where: str) -> None:
    columns = dataset.column_names
    if columns is None:  # a stream whose schema is only known from its first example
        try:
            columns = list(next(iter(dataset)).keys())
        except StopIteration:
            raise ValueError(f"The {where} is empty.") from None
    if text_column_name not in columns:
        raise ValueError(
            f"The {where} has no column {text_column_name!r}; its columns are {columns}. "
            "Set text_column_name (--text_column_name) to the column that holds the text."
        )
    feature = dataset.features.get(text_column_name) if dataset.features else None
    if feature is not None and getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise ValueError(
            f"Column {text_column_name!r} of the {where} holds {feature}, not text. "
            "Set text_column_name (--text_column_name) to the column that holds the text."
        )


def load_text_dataset(
    train_file: PathArg | None = None,
    validation_file: PathArg | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    text_column_name: str = "text",
    streaming: bool = False,
    validation_split_percentage: float = 5,
    seed: int = 42,
    sample_by: Literal["document", "paragraph", "line"] = "document",
    cache_dir: str | os.PathLike | None = None,
) -> DatasetDict | IterableDatasetDict:
    """Documents for training and validation, as `{"train", "validation"}` splits with a text column.

    Args:
        train_file: a file, a folder of files (searched recursively) or a list of them; see `SUPPORTED_EXTENSIONS`.
        validation_file: same forms; without it, validation is held out from the training documents.
        dataset_name: a dataset on the Hub (or a local dataset folder) for `datasets.load_dataset`; its
            "validation" split is used when it has one.
        dataset_config_name: the Hub dataset's configuration.
        text_column_name: the column holding the text; checked here so a typo fails before training.
        streaming: read lazily (`IterableDatasetDict`) for corpora larger than memory or disk.
        validation_split_percentage: percentage of training documents held out when no validation is given.
        seed: seed of the held-out split.
        sample_by: what a document is in a `.txt` file: "document" (the whole file), "paragraph" or "line".
        cache_dir: where `datasets` caches the loaded data (defaults to its own cache).
    """
    if dataset_name is not None and train_file is not None:
        raise ValueError(
            f"Pass either dataset_name ({dataset_name!r}) or train_file ({_describe(train_file)}), not both."
        )
    if dataset_name is None and train_file is None:
        if validation_file is not None:
            raise ValueError("validation_file needs a train_file to go with it.")
        raise ValueError("No training data: pass train_file (files or a folder) or dataset_name (a Hub dataset).")
    if dataset_name is not None and validation_file is not None:
        raise ValueError(
            f"validation_file goes with train_file; dataset_name ({dataset_name!r}) brings its own splits."
        )
    if sample_by not in TXT_SAMPLE_BY:
        raise ValueError(f"sample_by={sample_by!r} is not one of {TXT_SAMPLE_BY}.")
    check_validation_split_percentage(validation_split_percentage)
    cache_dir = None if cache_dir is None else str(cache_dir)

    if dataset_name is not None:
        loaded = read_dataset(
            [dataset_name], dataset_name, dataset_config_name, streaming=streaming, cache_dir=cache_dir
        )
        source = f"dataset {dataset_name!r}"
        if "train" not in loaded:
            raise ValueError(f"{source} has no 'train' split; its splits are {list(loaded)}.")
        train, validation = loaded["train"], loaded.get("validation")
    else:
        source = f"train_file {_describe(train_file)}"
        train_files = resolve_files(train_file, "train_file")
        train = _load_split(train_files, "train", "train_file", sample_by, streaming, cache_dir)
        validation = None
        if validation_file is not None:
            validation_files = resolve_files(validation_file, "validation_file")
            validation = _load_split(validation_files, "validation", "validation_file", sample_by, streaming, cache_dir)

    check_text_column(train, text_column_name, f"training data ({source})")
    if validation is not None:
        check_text_column(validation, text_column_name, "validation data")
    for where, split in ((f"training data ({source})", train), ("validation data", validation)):
        if isinstance(split, Dataset) and split.num_rows == 0:
            raise ValueError(f"The {where} is empty.")
    if validation is None:
        train, validation = _hold_out_validation(train, text_column_name, validation_split_percentage, seed)
    splits = {"train": train, "validation": validation}
    return IterableDatasetDict(splits) if streaming else DatasetDict(splits)
