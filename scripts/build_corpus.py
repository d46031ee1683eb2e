"""Rebuild the bundled corpus in `hf_custom_lm/corpus/` from pinned Debian packages.

    python scripts/build_corpus.py [--cache-dir DIR] [--output-dir hf_custom_lm/corpus]

Every source is a Debian 12 ("bookworm") package pinned by version and SHA-256; the script
downloads the missing ones with `apt-get download` into the cache directory, unpacks them
with `dpkg -x`, cuts each work into documents (a book chapter, a dictionary letter, a
documentation page), cleans them, splits them by a hash of the document id into
train and validation, and writes, byte for byte reproducibly:

    train.jsonl.gz, validation.jsonl.gz   one {"id", "source", "text"} object per line
    stats.json                           per source: package, title, language, license, documents and
                                         bytes per split; per split: documents, bytes, SHA-256

Three sources are stored in formats that need their own reader, installed from Debian:
`Rscript` (r-base-core) reads the R data of janeaustenr, `mod2imp` (libsword-utils) dumps
the SWORD modules of the World English Bible and of the Spanish Reina-Valera 1909 Bible:

    apt-get install --no-install-recommends r-base-core libsword-utils

data/README.md documents each source, its license and the cleaning.
"""

import argparse
import gzip
import hashlib
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VALIDATION_FRACTION = 0.03  # of documents, chosen by a hash of their id

# name, version, sha256 of the .deb, license of the texts we take
PACKAGES = {
    "r-cran-janeaustenr": (
        "1.0.0-1",
        "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
        "public domain (novels, 1811-1818); package MIT",
    ),
    "sword-text-web": (
        "426.0-1",
        "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1",
        "public domain (World English Bible)",
    ),
    "jargon-text": (
        "4.4.7-4.1",
        "17d05997e30eb3d5d6713929b8e2f81b63a5f50073858ad2a06701c71f54dcdb",
        "public domain (Jargon File 4.4.7)",
    ),
    "dict-devil": (
        "1.0-13.1",
        "6a535684def2a1f70cd42da16d12d43f0e9dc3e54e4a329178eebab3170e3154",
        "public domain (The Devil's Dictionary, 1911)",
    ),
    "python3.11-doc": (
        "3.11.2-6+deb12u9",
        "5b3594189d6ef9a6963ce0347fd307a1cc67620ad697e144db366070e2e146be",
        "PSF License Version 2 (Python documentation)",
    ),
    "sword-text-sparv": (
        "2.60-1",
        "5c87f9b2bc97457e8a872f5bae7ea7ce59cb3de1dcee73e4d4740451863694cf",
        "public domain (Reina-Valera 1909; package: \"This work is not copyrighted. It is in the Public Domain.\")",
    ),
}

PYDOC_SECTIONS = ("tutorial", "howto", "faq", "reference", "using", "extending", "glossary.rst.txt")
BOX_DRAWING = re.compile(r"[\u2500-\u257f]")


@dataclass
class Document:
    id: str
    source: str
    text: str


# ---------------------------------------------------------------- packages


def fetch_packages(cache_dir: Path, unpack_dir: Path) -> dict[str, Path]:
    """Download (if needed), verify and unpack each pinned package; returns name -> unpacked root."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    roots = {}
    for name, (version, sha256, _) in PACKAGES.items():
        debs = sorted(cache_dir.glob(f"{name}_*.deb"))
        deb = next((d for d in debs if _sha256(d) == sha256), None)
        if deb is None:
            subprocess.run(["apt-get", "download", f"{name}={version}"], cwd=cache_dir, check=True)
            deb = next((d for d in sorted(cache_dir.glob(f"{name}_*.deb")) if _sha256(d) == sha256), None)
            if deb is None:
                sys.exit(
                    f"build_corpus: apt-get downloaded {name}={version} but no file in {cache_dir} has the "
                    f"pinned SHA-256 {sha256}; the archive changed. Update PACKAGES and data/README.md."
                )
        root = unpack_dir / name
        root.mkdir(parents=True)
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        roots[name] = root
    return roots


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _require_tool(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"build_corpus: `{tool}` not found; install it with `apt-get install --no-install-recommends {package}`.")
    return path


# ---------------------------------------------------------------- cleaning helpers


def reflow(text: str, indent: int = 0) -> str:
    """Remove `indent` leading spaces and join hard-wrapped lines of plain prose paragraphs.

    A paragraph whose lines all start at the same column and hold no box-drawing characters
    is prose and becomes one line; anything else (verse, tables, code) keeps its line breaks.
    """
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip("\n")):
        lines = [line[indent:] if line[:indent].isspace() else line.lstrip() for line in block.split("\n")]
        lines = [line.rstrip() for line in lines]
        margins = {len(line) - len(line.lstrip()) for line in lines}
        if len(margins) == 1 and not any(BOX_DRAWING.search(line) for line in lines):
            paragraphs.append(" ".join(line.strip() for line in lines))
        else:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(p for p in paragraphs if p.strip())


def finish(text: str) -> str:
    """Common last step: NFC, no trailing spaces, at most one blank line, a final newline."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n")
    return text + "\n"


# ---------------------------------------------------------------- sources

AUSTEN_BOOKS = {
    "sensesensibility": "Sense and Sensibility",
    "prideprejudice": "Pride and Prejudice",
    "mansfieldpark": "Mansfield Park",
    "emma": "Emma",
    "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion",
}
AUSTEN_HEADING = re.compile(r"^(CHAPTER|Chapter|VOLUME) ([IVXLC]+|\d+)\.?$")
DUMP_AUSTEN_R = """
args <- commandArgs(trailingOnly = TRUE)
library(janeaustenr, lib.loc = args[1])
for (n in strsplit(args[3], ",")[[1]]) writeLines(get(n), file.path(args[2], paste0(n, ".txt")), useBytes = TRUE)
"""


def austen_documents(root: Path, work_dir: Path) -> list[Document]:
    """One document per chapter; a VOLUME heading goes with the chapter that follows it."""
    rscript = _require_tool("Rscript", "r-base-core")
    out = work_dir / "austen"
    out.mkdir()
    script = work_dir / "dump_austen.R"
    script.write_text(DUMP_AUSTEN_R)
    lib = root / "usr/lib/R/site-library"
    subprocess.run([rscript, str(script), str(lib), str(out), ",".join(AUSTEN_BOOKS)], check=True)
    docs = []
    for key in AUSTEN_BOOKS:
        lines = (out / f"{key}.txt").read_bytes().decode("utf-8").split("\n")
        chunks, current = [], []
        for line in lines:
            # close a chunk only once it holds a chapter heading and text after it
            if (
                AUSTEN_HEADING.match(line.strip())
                and any(l.startswith(("CHAPTER", "Chapter")) for l in current)
                and not AUSTEN_HEADING.match(next(l for l in reversed(current + ["x"]) if l.strip()).strip())
            ):
                chunks.append(current)
                current = []
            current.append(line)
        chunks.append(current)
        for number, chunk in enumerate(chunks, start=1):
            docs.append(Document(f"austen/{key}/{number:03d}", "austen", finish(reflow("\n".join(chunk)))))
    return docs


PARAGRAPH_MARK, LINE_MARK = "\ue000", "\ue001"  # private-use characters, absent from the module's text


SPANISH_CLITICS = {"lo", "la", "los", "las", "le", "les", "me", "te", "se", "nos", "os"}
SPANISH_ACCENTED_QUESTIONS = {"qué", "cuánto", "cuánta", "cuántos", "cuántas", "cómo", "dónde", "cuándo", "quién"}


def is_enclitic(host: str, added: str) -> bool:
    """Whether `added` (translators' words in <transChange>) starts with a pronoun joined to the verb `host`.

    The Reina-Valera 1909 marks such pronouns as added yet writes them joined ("sabiéndo|lo",
    "haced|lo", "da|lo"): a verb that takes one is an infinitive or imperative in -r/-d/-z, "da",
    "di", or a form accented on its stem (its written accent keeps the stress once joined).
    """
    first = added.split()[0] if added.split() else ""
    if first.lower() not in SPANISH_CLITICS:
        return False
    host = host.lower()
    accented = any(c in "áéíóú" for c in host) and host not in SPANISH_ACCENTED_QUESTIONS
    return host.endswith(("r", "d", "z")) or host in {"da", "di"} or accented


class _OsisText(html.parser.HTMLParser):
    """Plain text of an OSIS fragment: notes dropped, paragraphs, titles and poetry lines kept."""

    BREAK_PARAGRAPH = {"div", "title", "lg", "p", "list"}
    BREAK_LINE = {"l", "lb", "item", "speaker"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.note_depth = 0
        # a tag just passed that stands between two words even when no space does:
        # "note" (a footnote removed), "added" / "added_end" (edges of <transChange>)
        self.boundary: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "note":
            self.note_depth += 1
        elif self.note_depth == 0:
            self.boundary = "added" if tag == "transchange" else self.boundary
            self._break(tag)

    def handle_startendtag(self, tag, attrs):
        if self.note_depth == 0:
            self._break(tag)

    def handle_endtag(self, tag):
        if tag == "note" and self.note_depth:
            self.note_depth -= 1
            self.boundary = "note" if self.note_depth == 0 else None
        elif self.note_depth == 0:
            self.boundary = "added_end" if tag == "transchange" else self.boundary
            self._break(tag)

    def handle_data(self, data):
        if self.note_depth:
            return
        # "God<note/>created", "de la<transChange>que fué mujer</transChange>de Urías": words the
        # markup kept apart, except an added pronoun joined to its verb
        if self.boundary and self.parts and self.parts[-1][-1:].isalnum() and data[:1].isalnum():
            host = re.search(r"\w+$", self.parts[-1]).group()
            if not (self.boundary == "added" and is_enclitic(host, data)):
                data = " " + data
        self.boundary = None
        self.parts.append(data)

    def _break(self, tag):
        if tag in self.BREAK_PARAGRAPH:
            self.parts.append(PARAGRAPH_MARK)
        elif tag in self.BREAK_LINE:
            self.parts.append(LINE_MARK)

    def text(self) -> str:
        # milestone pairs (<l sID/> ... <l eID/>) mark each break twice: a run of marks is one break,
        # a paragraph break if any mark in the run is one
        text = re.sub(r"\s+", " ", "".join(self.parts))

        def one_break(match):
            run = match.group()
            return "\n\n" if PARAGRAPH_MARK in run else "\n" if LINE_MARK in run else " "

        return re.sub(r"[ \ue000\ue001]+", one_break, text)


SWORD_TESTAMENT = re.compile(r"\$\$\$\[ Testament (\d) Heading \]")
SWORD_KEY = re.compile(r"\$\$\$(.+) (\d+):(\d+)")
USFM_SHORT_TITLE = re.compile(r'<milestone n="([^"]+)" type="x-usfm-h"/>')


def bible_documents(
    root: Path,
    module: str,
    source: str,
    testaments: tuple[int, ...] = (1, 2),
    own_book_names: bool = False,
    verse_lines: bool = False,
) -> list[Document]:
    """One document per chapter of a SWORD Bible module; chapter 0 holds a book's introduction.

    Ids and, unless `own_book_names`, headings use the English book names of the SWORD keys;
    with `own_book_names` a heading uses the book's short title in the module's language (its
    USFM `h` milestone). A chapter 0 that holds nothing but that title is not a document.
    `verse_lines` starts each verse on a new line, for modules that mark no paragraphs inside a
    chapter (a verse is then the paragraph, as in their printed editions).
    """
    mod2imp = _require_tool("mod2imp", "libsword-utils")
    env = dict(os.environ, SWORD_PATH=str(root / "usr/share/sword"))
    dump = subprocess.run([mod2imp, module], env=env, check=True, capture_output=True).stdout
    chapters: dict[tuple[str, int], list[str]] = {}  # (book, chapter) -> OSIS of each verse
    key, testament = None, 0
    for line in dump.decode("utf-8").split("\n"):
        if line.startswith("$$$"):
            heading = SWORD_TESTAMENT.fullmatch(line)
            testament = int(heading.group(1)) if heading else testament
            match = SWORD_KEY.fullmatch(line)
            key = (match.group(1), int(match.group(2))) if match and testament in testaments else None
            if key is not None:
                chapters.setdefault(key, []).append("")
        elif key is not None:
            chapters[key][-1] += " " + line
    titles = {}
    if own_book_names:
        for (book, chapter), fragments in chapters.items():
            found = USFM_SHORT_TITLE.search(" ".join(fragments)) if chapter == 0 else None
            if found:
                titles[book] = html.unescape(found.group(1))
        missing = sorted({book for book, _ in chapters} - set(titles))
        if missing:
            sys.exit(f"build_corpus: no x-usfm-h title for {missing} in SWORD module {module}; pass own_book_names=False.")
    docs = []
    for (book, chapter), fragments in chapters.items():
        parser = _OsisText()
        parser.feed(("<lb/>" if verse_lines else " ").join(fragments))
        parser.close()
        body = parser.text().strip()
        name = titles.get(book, book)
        if not body or (chapter == 0 and body == name):
            continue
        heading = name if chapter == 0 else f"{name} {chapter}"
        slug = re.sub(r"[^0-9A-Za-z]+", "_", book).strip("_").lower()
        docs.append(Document(f"{source}/{slug}/{chapter:03d}", source, finish(f"{heading}\n\n{body}")))
    return docs


JARGON_SECTION = re.compile(r"^(Chapter\s\d+\.\s.+|Glossary|Appendix\s[A-Z]\.\s.+|Bibliography)$")  # \s: no-break spaces
JARGON_LETTER = re.compile(r"^  ([0-9A-Z])$")


def jargon_documents(root: Path) -> list[Document]:
    """Front matter, each chapter, each letter of the lexicon, each appendix, the bibliography."""
    raw = gzip.decompress((root / "usr/share/doc/jargon-text/jargon.txt.gz").read_bytes()).decode("utf-8")
    sections: list[tuple[str, list[str]]] = [("front", [])]
    for line in raw.split("\n"):
        if JARGON_SECTION.match(line):
            title = line.split(".")[0] if not line.startswith(("Glossary", "Bibliography")) else line
            sections.append((title, [line]))
        elif sections[-1][0].startswith("Glossary") and JARGON_LETTER.match(line):
            sections.append((f"Glossary {JARGON_LETTER.match(line).group(1)}", []))
        else:
            sections[-1][1].append(line)
    docs = []
    for title, lines in sections:
        text = "\n".join(lines)
        if title.startswith("Glossary"):
            first_entry = re.search(r"^   :", text, flags=re.M)  # the letter's index of headwords precedes it
            if first_entry is None:
                continue
            text = text[first_entry.start():]
        text = _drop_table_of_contents(text)
        slug = re.sub(r"[^0-9A-Za-z]+", "_", title).strip("_").lower()
        docs.append(Document(f"jargon/{slug}", "jargon", finish(reflow(text, indent=3))))
    return docs


def _drop_table_of_contents(text: str) -> str:
    """Drop a "Table of Contents" line and the one-line paragraphs (titles) that follow it."""
    blocks = re.split(r"\n\s*\n", text)
    kept, skipping = [], False
    for block in blocks:
        if block.strip() == "Table of Contents":
            skipping = True
            continue
        if skipping and block.strip() and "\n" not in block.strip():
            continue
        skipping = False
        kept.append(block)
    return "\n\n".join(kept)


_DICTD_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dictd_number(digits: str) -> int:
    value = 0
    for digit in digits:
        value = value * 64 + _DICTD_BASE64.index(digit)
    return value


def devil_documents(root: Path) -> list[Document]:
    """The preface and one document per initial letter, entries located through the dictd index."""
    data = gzip.decompress((root / "usr/share/dictd/devil.dict.dz").read_bytes())
    index = (root / "usr/share/dictd/devil.index").read_text(encoding="utf-8").splitlines()
    entries = sorted((_dictd_number(o), _dictd_number(n), word) for word, o, n in (row.split("\t") for row in index))
    info = next(data[o : o + n] for o, n, word in entries if word == "00databaseinfo").decode("utf-8")
    preface = info[info.index("THE DEVIL'S DICTIONARY") :]
    docs = [Document("devil/preface", "devil", finish(reflow(preface)))]
    letters: dict[str, list[str]] = {}
    for offset, length, word in entries:
        if not word.startswith("00database"):
            letters.setdefault(word[0].upper(), []).append(data[offset : offset + length].decode("utf-8"))
    for letter, texts in sorted(letters.items()):
        docs.append(Document(f"devil/{letter.lower()}", "devil", finish(reflow("\n\n".join(texts)))))
    return docs


def pydoc_documents(root: Path) -> list[Document]:
    """One document per reStructuredText source page of chosen sections, markup kept."""
    base = root / "usr/share/doc/python3.11/html/_sources"
    paths = []
    for section in PYDOC_SECTIONS:
        path = base / section
        paths += sorted(path.rglob("*.rst.txt")) if path.is_dir() else [path]
    return [
        Document(f"pydoc/{p.relative_to(base).as_posix()[: -len('.rst.txt')]}", "pydoc", finish(p.read_text("utf-8")))
        for p in paths
    ]


SOURCES = {
    # source -> (package, title, language as a BCP 47 tag)
    "austen": ("r-cran-janeaustenr", "Jane Austen, six novels", "en"),
    "web": ("sword-text-web", "World English Bible with Deuterocanon", "en"),
    "jargon": ("jargon-text", "The Jargon File 4.4.7", "en"),
    "devil": ("dict-devil", "Ambrose Bierce, The Devil's Dictionary", "en"),
    "pydoc": ("python3.11-doc", "Python 3.11 documentation, reST sources: " + ", ".join(PYDOC_SECTIONS), "en"),
    "es-bible": ("sword-text-sparv", "Santa Biblia, Reina-Valera 1909, New Testament", "es"),
}


# ---------------------------------------------------------------- split and write


def is_validation(doc_id: str) -> bool:
    """Fixed split: the first 8 bytes of sha256(id) as a fraction of 2**64 below VALIDATION_FRACTION."""
    digest = hashlib.sha256(doc_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < VALIDATION_FRACTION * 2**64


def write_jsonl_gz(path: Path, docs: list[Document]) -> None:
    """Reproducible gzip: no file name, mtime 0, fixed compression level."""
    payload = "".join(
        json.dumps({"id": d.id, "source": d.source, "text": d.text}, ensure_ascii=False) + "\n" for d in docs
    ).encode("utf-8")
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(payload)


def build(cache_dir: Path, output_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        roots = fetch_packages(cache_dir, work / "unpacked")
        docs = (
            austen_documents(roots["r-cran-janeaustenr"], work)
            + bible_documents(roots["sword-text-web"], "engWEB2015eb", "web")
            + jargon_documents(roots["jargon-text"])
            + devil_documents(roots["dict-devil"])
            + pydoc_documents(roots["python3.11-doc"])
            + bible_documents(
                roots["sword-text-sparv"], "spaRV1909eb", "es-bible", testaments=(2,), own_book_names=True, verse_lines=True
            )
        )
    ids = [d.id for d in docs]
    if len(set(ids)) != len(ids):
        sys.exit("build_corpus: duplicate document ids; fix the id scheme of the source that repeats one.")
    splits = {"train": [d for d in docs if not is_validation(d.id)], "validation": [d for d in docs if is_validation(d.id)]}
    output_dir.mkdir(parents=True, exist_ok=True)
    stats = {"validation_fraction": VALIDATION_FRACTION, "sources": {}, "splits": {}}
    for split, split_docs in splits.items():
        path = output_dir / f"{split}.jsonl.gz"
        write_jsonl_gz(path, split_docs)
        stats["splits"][split] = {
            "file": path.name,
            "documents": len(split_docs),
            "utf8_bytes": sum(len(d.text.encode("utf-8")) for d in split_docs),
            "gzip_bytes": path.stat().st_size,
            "sha256": _sha256(path),
        }
    for source, (package, title, language) in SOURCES.items():
        version, _, license_ = PACKAGES[package]
        entry = {"package": f"{package} {version}", "title": title, "language": language, "license": license_}
        for split, split_docs in splits.items():
            mine = [d for d in split_docs if d.source == source]
            entry[split] = {"documents": len(mine), "utf8_bytes": sum(len(d.text.encode("utf-8")) for d in mine)}
        stats["sources"][source] = entry
    (output_dir / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "hf_custom_lm" / "debs",
                        help="where the pinned .deb files are downloaded and reused")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "hf_custom_lm" / "corpus")
    args = parser.parse_args(argv)
    stats = build(args.cache_dir, args.output_dir)
    width = max(len(s) for s in stats["sources"])
    print(f"{'source':<{width}}  {'train docs':>10}  {'train bytes':>12}  {'val docs':>8}  {'val bytes':>10}")
    for source, entry in stats["sources"].items():
        t, v = entry["train"], entry["validation"]
        print(f"{source:<{width}}  {t['documents']:>10}  {t['utf8_bytes']:>12}  {v['documents']:>8}  {v['utf8_bytes']:>10}")
    for split, entry in stats["splits"].items():
        print(f"{split}: {entry['documents']} documents, {entry['utf8_bytes']} UTF-8 bytes, "
              f"{entry['gzip_bytes']} bytes gzipped -> {args.output_dir / entry['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
