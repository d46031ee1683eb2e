"""Choose the bundled tokenizer's vocabulary size by measurement.

    python benchmarks/bench_tokenizer.py [--vocab_sizes 4096 8192 16384 32768] [--repeats 3]

For each vocabulary size it trains a byte-level BPE on the bundled corpus's train split (the same
`train_tokenizer` and settings as the bundled tokenizer), then reports, on the validation split:

- bytes per token (UTF-8 bytes / tokens; higher = shorter sequences), overall and for the English
  and the other-language documents (languages from the corpus's stats.json);
- training time, median of `repeats` trainings, in wall seconds and in CPU seconds (all threads);
- encode throughput through the batch API (`tokenizer(list_of_documents)`), in MB of UTF-8 per
  wall second and per CPU second, median of `repeats` passes after one warm-up pass.

On a shared machine the wall-clock figures move with the load (the script prints the load
average); the CPU-second figures are steadier. Bytes per token are exact and do not vary.

It prints a Markdown table (pasted into benchmarks/tokenizer_RESULTS.md) and writes
benchmarks/results/tokenizer.json.
"""

import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/bench_tokenizer.py` from anywhere
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import HfArgumentParser  # noqa: E402

from hf_custom_lm.training.tokenization import bundled_corpus_files, train_tokenizer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "tokenizer.json"


@dataclass
class BenchArguments:
    vocab_sizes: list[int] = field(default_factory=lambda: [4096, 8192, 16384, 32768])
    min_frequency: int = field(default=2, metadata={"help": "as for the bundled tokenizer"})
    repeats: int = field(default=3, metadata={"help": "timed repeats; medians are reported"})


def bytes_per_token(tokenizer, texts: list[str]) -> float:
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return sum(len(t.encode("utf-8")) for t in texts) / sum(len(x) for x in ids)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of all this process's threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def encode_throughput(tokenizer, texts: list[str], repeats: int) -> tuple[float, float]:
    """(MB/s of wall time, MB per CPU-second), medians over `repeats` passes after a warm-up."""
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    tokenizer(texts, add_special_tokens=False)  # warm-up
    runs = [timed(lambda: tokenizer(texts, add_special_tokens=False)) for _ in range(repeats)]
    return megabytes / statistics.median(r[0] for r in runs), megabytes / statistics.median(r[1] for r in runs)


def main(argv: list[str] | None = None) -> int:
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses(args=argv)
    transformers.logging.set_verbosity_error()  # documents are longer than model_max_length: expected here
    datasets.disable_progress_bars()
    corpus = datasets.load_dataset("json", data_files={k: str(v) for k, v in bundled_corpus_files().items()})
    validation = corpus["validation"]
    texts = list(validation["text"])
    # Per-language figures: each source's language is recorded by the corpus build in stats.json.
    stats = json.loads((bundled_corpus_files()["train"].parent / "stats.json").read_text())
    language = {name: info["language"] for name, info in stats["sources"].items()}
    english = [t for t, s in zip(texts, validation["source"]) if language[s] == "en"]
    other = [t for t, s in zip(texts, validation["source"]) if language[s] != "en"]
    other_languages = "/".join(sorted({language[s] for s in validation["source"]} - {"en"}))

    load_before = os.getloadavg()[0]
    rows = []
    for vocab_size in args.vocab_sizes:
        train_runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                wall, cpu = time.perf_counter(), time.process_time()
                tokenizer = train_tokenizer(
                    dataset=corpus["train"], vocab_size=vocab_size, min_frequency=args.min_frequency, output_dir=tmp
                )
                train_runs.append((time.perf_counter() - wall, time.process_time() - cpu))
        encode_wall, encode_cpu = encode_throughput(tokenizer, texts, args.repeats)
        row = {
            "vocab_size": vocab_size,
            "bytes_per_token": bytes_per_token(tokenizer, texts),
            "bytes_per_token_english": bytes_per_token(tokenizer, english),
            "bytes_per_token_other": bytes_per_token(tokenizer, other),
            "train_seconds": statistics.median(r[0] for r in train_runs),
            "train_cpu_seconds": statistics.median(r[1] for r in train_runs),
            "encode_mb_per_s": encode_wall,
            "encode_mb_per_cpu_s": encode_cpu,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    val_bytes = sum(len(t.encode("utf-8")) for t in texts)
    print(
        f"\nvalidation split: {len(texts)} documents, {val_bytes} UTF-8 bytes "
        f"({len(english)} English documents, {len(other)} in {other_languages}); train split: {len(corpus['train'])} documents; "
        f"medians of {args.repeats} runs; {os.cpu_count()} CPUs, tokenizers {tokenizers.__version__}, "
        f"transformers {transformers.__version__}; 1-minute load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after (timings are inflated when it exceeds the CPU count)\n"
    )
    print(
        f"| vocab | bytes/token (all) | bytes/token (English) | bytes/token ({other_languages}) | train s (wall) "
        "| train s (CPU) | encode MB/s (wall) | encode MB per CPU-s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['vocab_size']} | {r['bytes_per_token']:.3f} | {r['bytes_per_token_english']:.3f} | "
            f"{r['bytes_per_token_other']:.3f} | {r['train_seconds']:.1f} | {r['train_cpu_seconds']:.1f} | "
            f"{r['encode_mb_per_s']:.2f} | {r['encode_mb_per_cpu_s']:.2f} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": datetime.date.today().isoformat(),
                "arguments": asdict(args),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "load_average_before": load_before, "load_average_after": os.getloadavg()[0]},
                "versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__},
                "validation_documents": len(texts),
                "validation_bytes": val_bytes,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
