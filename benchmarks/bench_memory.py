"""Peak memory of a training step at context 1024: our CustomLMForCausalLM vs transformers' LlamaForCausalLM.

Each measurement runs in a fresh subprocess so that one model's peak cannot hide the other's: the child
builds the model and its AdamW optimizer, reads its resident set size (RSS, from /proc/self/statm), runs
one step (forward with labels + backward + AdamW step) and reports the peak RSS of the process
(`getrusage(RUSAGE_SELF).ru_maxrss`) minus that baseline. Children alternate: ours, llama, ours, llama, ...

    .venv/bin/python -m benchmarks.bench_memory [--quick]
"""

import json
import os
import resource
import subprocess
import sys

import torch

from benchmarks.common import ROOT, Size, median, parse_bench_args, print_table, write_results

CHILD_FLAG = "--child"


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(name: str, dtype_name: str, batch_size: int, context: int) -> None:
    """Runs in the subprocess: one training step, then a JSON line with the RSS numbers."""
    from benchmarks.common import build_custom, build_llama

    size = Size(batch_size=batch_size, context=context)
    model = (build_custom if name == "ours" else build_llama)(size).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    data = torch.randint(0, size.vocab_size, (batch_size, context))
    baseline = current_rss_bytes()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype_name == "bfloat16"):
        loss = model(input_ids=data, labels=data).loss
    loss.backward()
    optimizer.step()
    print(json.dumps({"baseline_bytes": baseline, "peak_bytes": peak_rss_bytes()}))


def measure(name: str, dtype_name: str, batch_size: int, context: int) -> dict:
    command = [sys.executable, "-m", "benchmarks.bench_memory", CHILD_FLAG, name, dtype_name, str(batch_size), str(context)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"memory child {name} {dtype_name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict:
    size = Size(context=1024, batch_size=2 if quick else 16)
    repeats = 1 if quick else 2
    dtypes = ("float32",) if quick else ("float32", "bfloat16")
    rows, targets = [], {}
    for dtype_name in dtypes:
        samples = {"ours": [], "llama": []}
        for _ in range(repeats):
            for name in samples:
                numbers = measure(name, dtype_name, size.batch_size, size.context)
                samples[name].append(numbers["peak_bytes"] - numbers["baseline_bytes"])
        peaks = {name: median(values) for name, values in samples.items()}
        ratio = peaks["ours"] / peaks["llama"]
        for name, peak in peaks.items():
            rows.append(
                {
                    "model": name,
                    "dtype": dtype_name,
                    "step_peak_mib": peak / 2**20,
                    "ours_over_llama": ratio,
                    "samples_bytes": samples[name],
                }
            )
        met = "met" if ratio <= 0.7 else "NOT met"
        targets[f"ours peak <= 0.7x llama, {dtype_name}"] = f"{met} ({ratio:.2f}x vs <= 0.7x)"

    print_table(
        rows,
        ["model", "dtype", "step_peak_mib", "ours_over_llama"],
        f"Peak RSS of one training step above the model + optimizer baseline, batch {size.batch_size} x "
        f"context {size.context}, median of {repeats} fresh processes",
    )
    for name, result in targets.items():
        print(f"  {name}: {result}")
    payload = {"size": size.__dict__, "rows": rows, "targets": targets, "quick": quick}
    print("wrote", write_results("memory_quick" if quick else "memory", payload))
    return payload


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD_FLAG:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        run(parse_bench_args().quick)
