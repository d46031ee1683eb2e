"""Run every side-by-side benchmark (what `make bench` runs), each in its own process, then list the targets.

    .venv/bin/python benchmarks/run_all.py [--quick]

Results: one JSON per benchmark under benchmarks/results/ (see benchmarks/README.md). The tokenizer
benchmark (`bench_tokenizer.py`) answers another question, the vocabulary size, and runs on its own.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: `python benchmarks/run_all.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS_DIR, environment, parse_bench_args  # noqa: E402

BENCHMARKS = ("bench_train", "bench_trainer_overhead", "bench_generate", "bench_memory")
RESULT_NAMES = {"bench_train": "train", "bench_trainer_overhead": "trainer_overhead",
                "bench_generate": "generate", "bench_memory": "memory"}


def markdown_table(rows: list[dict], columns: dict[str, str]) -> str:
    """columns: row key -> header. Floats: thousands with a separator, small ones to 3 significant digits."""

    def fmt(value):
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row[key]) for key in columns) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(suffix: str = "") -> str:
    """The tables of benchmarks/RESULTS.md, rendered from the JSON results of one run."""
    load = lambda name: json.loads((RESULTS_DIR / f"{name}{suffix}.json").read_text())  # noqa: E731
    train, overhead, generate, memory = (load(RESULT_NAMES[name]) for name in BENCHMARKS)
    env = train["environment"]
    parts = [
        f"Run of {env['date']}: {env['cpu']}, {env['cpu_count']} CPUs, {env['torch_threads']} torch threads, native "
        f"bf16 matmul: {env['native_bf16_matmul']}; Python {env['python']}, torch {env['torch']}, transformers "
        f"{env['transformers']}.",
        "\n### Training throughput\n",
        "Peak matmul (2048^3, best of the interleaved samples): "
        + ", ".join(f"{dtype} {flops / 1e9:.0f} GFLOP/s" for dtype, flops in train["peak_flops"].items())
        + f". Batch {train['size']['batch_size']} x context {train['size']['context']}. Graph breaks in a training "
        "forward (`torch._dynamo.explain`): " + ", ".join(f"{k} {v}" for k, v in train["graph_breaks"].items()) + ".\n",
        markdown_table(
            [{**row, "mfu_pct": 100 * row["mfu"], "kernel_pct": 100 * row["kernel_share"]} for row in train["rows"]],
            {"model": "model", "dtype": "dtype", "compile": "compiled", "tokens_per_s": "tokens/s",
             "mfu_pct": "MFU %", "ours_over_this": "ours / this", "tokens_per_cpu_s": "tokens/CPU-s",
             "ours_over_this_cpu": "ours / this (CPU)", "cores_busy": "CPU-s per s",
             "kernel_pct": "in matmul + attention kernels %", "ceiling_over_this": "ceiling ours / this"},
        ),
        "\n### Trainer overhead\n",
        markdown_table(overhead["rows"], {"path": "path", "step_s": "step s", "tokens_per_s": "tokens/s",
                                          "step_cpu_s": "step CPU-s"}),
        f"\nOverhead: {100 * overhead['overhead_fraction']:+.1f}% in wall time, "
        f"{100 * overhead['overhead_fraction_cpu']:+.1f}% in CPU time ({'bf16' if overhead['bf16'] else 'fp32'}).",
        "\n### Generation\n",
        markdown_table(
            generate["rows"],
            {"model": "model", "batch": "batch", "mode": "cache", "tokens_per_s": "new tokens/s",
             "ttft_ms": "first token ms", "ours_over_llama": "ours / llama", "tokens_per_cpu_s": "new tokens/CPU-s"},
        ),
        "\nSame tokens as Llama: " + ", ".join(f"{k}: {v}" for k, v in generate["same_tokens_as_llama"].items()) + ".",
        "\n### Memory\n",
        markdown_table(memory["rows"], {"model": "model", "dtype": "dtype", "step_peak_mib": "step peak MiB",
                                        "ours_over_llama": "ours / llama"}),
        "\n### Targets\n",
    ]
    for result in (train, overhead, generate, memory):
        parts += [f"- {target}: {verdict}" for target, verdict in result["targets"].items()]
    loads = [r["environment"]["load_average_1_5_15min_at_start"][0] for r in (train, overhead, generate, memory)]
    parts.append(f"\n1-minute load average at the start of each benchmark: {', '.join(f'{x:.2f}' for x in loads)}.")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_bench_args(argv)
    print("environment:", json.dumps(environment()))
    failed, summary = [], []
    for name in BENCHMARKS:
        print(f"\n=== {name}{' --quick' if args.quick else ''}", flush=True)
        start = time.perf_counter()
        command = [sys.executable, "-m", f"benchmarks.{name}", *(["--quick"] if args.quick else [])]
        returncode = subprocess.run(command, cwd=ROOT).returncode
        print(f"=== {name}: {time.perf_counter() - start:.0f} s, exit code {returncode}", flush=True)
        if returncode != 0:
            failed.append(name)
            continue
        result_file = RESULTS_DIR / f"{RESULT_NAMES[name]}{'_quick' if args.quick else ''}.json"
        summary += [f"{name}: {target}: {verdict}" for target, verdict in json.loads(result_file.read_text())["targets"].items()]
    print("\nTargets")
    for line in summary:
        print("  " + line)
    if not failed:
        report = RESULTS_DIR / f"report{'_quick' if args.quick else ''}.md"
        report.write_text(markdown_report("_quick" if args.quick else ""))
        print(f"\nMarkdown tables of this run: {report}")
    if failed:
        print(f"\nFailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
