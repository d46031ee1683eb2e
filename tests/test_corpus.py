"""The bundled corpus: loads with `datasets`, a fixed split by document that is disjoint, files that
match their recorded statistics, and the cleaning helpers of the build script."""

import gzip
import hashlib
import importlib.util
import json
import re
import unicodedata
from pathlib import Path

import datasets
import pytest

from hf_custom_lm.training.tokenization import CORPUS_DIR, bundled_corpus_files

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "build_corpus.py"


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("build_corpus", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def corpus():
    return datasets.load_dataset("json", data_files={k: str(v) for k, v in bundled_corpus_files().items()})


@pytest.fixture(scope="module")
def stats():
    return json.loads((CORPUS_DIR / "stats.json").read_text(encoding="utf-8"))


def test_bundled_corpus_files_are_the_two_gzipped_splits_in_the_package():
    files = bundled_corpus_files()
    assert set(files) == {"train", "validation"}
    for split, path in files.items():
        assert path == CORPUS_DIR / f"{split}.jsonl.gz" and path.is_file()


def test_corpus_loads_with_datasets_and_matches_its_statistics(corpus, stats):
    for split in ("train", "validation"):
        assert corpus[split].column_names == ["id", "source", "text"]
        recorded = stats["splits"][split]
        assert len(corpus[split]) == recorded["documents"]
        assert sum(len(t.encode("utf-8")) for t in corpus[split]["text"]) == recorded["utf8_bytes"]
        path = CORPUS_DIR / recorded["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded["sha256"]
        for source, entry in stats["sources"].items():
            assert list(corpus[split]["source"]).count(source) == entry[split]["documents"]


def test_corpus_is_real_text_of_the_documented_size(stats):
    total = sum(s["utf8_bytes"] for s in stats["splits"].values())
    assert 5e6 <= total <= 20e6
    assert sum((CORPUS_DIR / s["file"]).stat().st_size for s in stats["splits"].values()) < 8e6
    other = sum(
        e[split]["utf8_bytes"] for e in stats["sources"].values() if e["language"] != "en" for split in ("train", "validation")
    )
    assert 0 < other < total / 2  # English first, a smaller share of another language
    for entry in stats["sources"].values():
        assert entry["package"] and entry["title"] and entry["license"]


def test_every_source_is_public_domain_or_permissively_licensed(stats, build):
    for source, entry in stats["sources"].items():
        license_ = entry["license"]
        assert license_.startswith(("public domain", "PSF License")), (source, license_)
        assert not re.search(r"GPL|GFDL|-SA\b|ShareAlike|non-?commercial", license_, flags=re.I), (source, license_)
    # stats.json records exactly the sources the build script declares
    assert {p for p, *_ in build.SOURCES.values()} == set(build.PACKAGES)
    assert set(stats["sources"]) == set(build.SOURCES)


def test_split_is_disjoint_and_follows_the_hash_of_the_document_id(corpus, build):
    train_ids, validation_ids = set(corpus["train"]["id"]), set(corpus["validation"]["id"])
    assert len(train_ids) == len(corpus["train"]) and len(validation_ids) == len(corpus["validation"])
    assert not train_ids & validation_ids
    assert not any(build.is_validation(i) for i in train_ids)
    assert all(build.is_validation(i) for i in validation_ids)
    fraction = len(validation_ids) / (len(train_ids) + len(validation_ids))
    assert 0.02 <= fraction <= 0.05


def test_both_splits_hold_english_and_another_language(corpus, stats):
    languages = {source: entry["language"] for source, entry in stats["sources"].items()}
    for split in ("train", "validation"):
        present = {languages[s] for s in corpus[split]["source"]}
        assert "en" in present and present - {"en"}


def test_spanish_bible_chapters_have_spanish_headings_and_a_verse_per_line(corpus):
    documents = [d for split in ("train", "validation") for d in corpus[split] if d["source"] == "es-bible"]
    assert len(documents) == 260  # the New Testament's chapters, no book whose chapter 0 holds only its title
    by_id = {d["id"]: d["text"] for d in documents}
    assert by_id["es-bible/matthew/001"].startswith("San Mateo 1\n\nLIBRO de la generación de Jesucristo")
    for doc_id, text in by_id.items():
        heading, blank, *verses = text.split("\n")
        assert heading.endswith(f" {int(doc_id.rsplit('/', 1)[1])}") and blank == "" and len(verses) >= 2, doc_id
        assert not re.search(r"[<>]", text), doc_id  # no OSIS markup left


def test_documents_are_clean_nfc_text_ending_in_one_newline(corpus):
    for split in ("train", "validation"):
        for text in corpus[split]["text"]:
            assert text.strip() and text.endswith("\n") and not text.endswith("\n\n")
            assert "\r" not in text and "\x1b" not in text and "\n\n\n" not in text
            assert unicodedata.is_normalized("NFC", text)


def test_gzip_files_carry_no_timestamp_or_name():
    for path in bundled_corpus_files().values():
        header = path.read_bytes()[:10]
        assert header[:3] == b"\x1f\x8b\x08" and header[3] == 0  # no FNAME: the file name is not stored
        assert header[4:8] == b"\x00\x00\x00\x00"  # mtime 0


def test_write_jsonl_gz_is_byte_reproducible(build, tmp_path):
    docs = [build.Document("a/1", "austen", "Chapter 1\n"), build.Document("es/1", "es-bible", "¿Cómo? 床前明月光\n")]
    build.write_jsonl_gz(tmp_path / "x.jsonl.gz", docs)
    first = (tmp_path / "x.jsonl.gz").read_bytes()
    build.write_jsonl_gz(tmp_path / "x.jsonl.gz", docs)
    assert (tmp_path / "x.jsonl.gz").read_bytes() == first
    lines = gzip.decompress(first).decode("utf-8").splitlines()
    assert "¿Cómo? 床前明月光" in lines[1]  # stored as UTF-8, not as \\u escapes
    assert json.loads(lines[1]) == {"id": "es/1", "source": "es-bible", "text": "¿Cómo? 床前明月光\n"}


def test_reflow_joins_wrapped_prose_and_keeps_verse_and_tables(build):
    text = "   It is a truth universally\n   acknowledged.\n\n   ┌─┐\n   │x│\n\n      a verse line\n   back out\n"
    assert build.reflow(text, indent=3) == "It is a truth universally acknowledged.\n\n┌─┐\n│x│\n\n   a verse line\nback out"


def test_osis_text_drops_notes_without_gluing_words_and_keeps_poetry_lines(build):
    parser = build._OsisText()
    parser.feed(
        '<w>God</w><note placement="foot">1:1 a note</note><w>created</w> it. <div eID="p1" type="x-p"/>'
        '<lg><l sID="a"/>The LORD is my shepherd;<l eID="a"/> <l sID="b"/>I shall lack nothing.<l eID="b"/></lg>'
    )
    parser.close()
    assert parser.text().strip() == "God created it.\n\nThe LORD is my shepherd;\nI shall lack nothing."


def test_osis_text_keeps_added_words_apart_but_joins_an_added_pronoun_to_its_verb(build):
    parser = build._OsisText()
    parser.feed(
        '<w>de</w> <w>la</w><transChange type="added">que fué mujer</transChange><w>de</w> <w>Urías</w>: '
        '<w>y sabiéndo</w><transChange type="added">lo</transChange><w>Jesús</w>, '
        '<w>las gentes</w><transChange type="added">lo</transChange><w>oyeron</w>'
    )
    parser.close()
    assert parser.text() == "de la que fué mujer de Urías: y sabiéndolo Jesús, las gentes lo oyeron"


@pytest.mark.parametrize(
    "host, added, joined",
    [("sabiéndo", "lo", True), ("haced", "lo", True), ("dar", "lo", True), ("da", "lo", True), ("haz", "lo", True),
     ("manifestaré", "lo aún", True), ("gentes", "lo", False), ("cuánto", "nos", False), ("la", "que fué", False),
     ("Dios", "lo", False), ("Jacobo", "hijo", False)],
)
def test_is_enclitic_joins_only_a_pronoun_after_a_verb_form(build, host, added, joined):
    assert build.is_enclitic(host, added) is joined
