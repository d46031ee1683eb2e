"""Training throughput: our CustomLMForCausalLM vs transformers' LlamaForCausalLM and GPT2LMHeadModel and a
hand-written nanoGPT-style model, same size, fp32 and bf16 autocast, eager and torch.compile.

A step is forward with labels + backward + AdamW step (`fused=True`, the Trainer's default optimizer on
torch >= 2.8, for every contender). MFU = model FLOPs per second / the best FLOP/s of a 2048^3 matmul in
the same dtype, timed in this run among the contenders (interleaved with them). One profiled step per
contender gives the time spent in matmul and attention kernels, which every contender runs alike: the
"ceiling" is the ratio ours would reach over a contender if ours spent nothing outside those kernels.

    .venv/bin/python -m benchmarks.bench_train [--quick]
"""

import torch

from benchmarks.common import (
    PEAK_MATMUL_SIZE,
    Size,
    build_custom,
    build_gpt2,
    build_llama,
    build_nanogpt,
    interleaved,
    kernel_share,
    matmul_call,
    matmul_flops,
    median,
    parse_bench_args,
    print_table,
    train_flops_per_token,
    verdict,
    write_results,
)

BUILDERS = {"ours": build_custom, "llama": build_llama, "gpt2": build_gpt2, "nanogpt": build_nanogpt}


def make_train_step(name: str, model: torch.nn.Module, data: torch.Tensor, dtype: torch.dtype, compiled: bool):
    """A closure running one optimisation step on `data` (B, T + 1)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    forward = torch.compile(model) if compiled else model
    inputs, targets = data[:, :-1], data[:, 1:]

    def loss_of_batch():
        if name == "nanogpt":
            return forward(inputs, targets)[1]
        return forward(input_ids=inputs, labels=inputs).loss  # HF models shift the labels themselves

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = loss_of_batch()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def graph_breaks(model: torch.nn.Module, data: torch.Tensor) -> int:
    """`torch._dynamo.explain` graph breaks of a training forward with labels (0: one graph to compile)."""
    model.train()
    explanation = torch._dynamo.explain(lambda ids: model(input_ids=ids, labels=ids).loss)(data[:, :-1])
    torch._dynamo.reset()
    return explanation.graph_break_count


def run(quick: bool = False) -> dict:
    size = Size(batch_size=4, context=128) if quick else Size()
    # bf16 steps are several times slower on CPUs without native bf16 matmuls: fewer repeats keep the run short.
    warmup = 2
    repeats = {torch.float32: 1, torch.bfloat16: 1} if quick else {torch.float32: 9, torch.bfloat16: 3}
    tokens_per_step = size.batch_size * size.context
    torch.manual_seed(0)
    data = torch.randint(0, size.vocab_size, (size.batch_size, size.context + 1))

    dtypes = (torch.float32, torch.bfloat16)
    matmul_seconds = {dtype: [] for dtype in dtypes}
    settings = []
    for compiled in (False, True):
        for dtype in dtypes:
            torch._dynamo.reset()
            models = {name: build(size) for name, build in BUILDERS.items()}
            contenders = {name: make_train_step(name, m, data, dtype, compiled) for name, m in models.items()}
            contenders["matmul"] = matmul_call(dtype)
            samples, cpu_samples = interleaved(contenders, warmup=warmup, repeats=repeats[dtype])
            matmul_seconds[dtype] += samples.pop("matmul")
            cpu_samples.pop("matmul")
            kernels = {name: kernel_share(contenders[name]) for name in models}  # one profiled step each
            flops = {name: train_flops_per_token(m, size) for name, m in models.items()}
            settings.append((compiled, dtype, samples, cpu_samples, kernels, flops))
            del models, contenders

    breaks = {name: graph_breaks(BUILDERS[name](size), data) for name in ("ours", "llama")}
    peaks = {dtype: matmul_flops(min(secs)) for dtype, secs in matmul_seconds.items()}
    rows = []
    for compiled, dtype, samples, cpu_samples, kernels, flops in settings:
        ours_tps = tokens_per_step / median(samples["ours"])
        ours_cpu = median(cpu_samples["ours"])
        for name, secs in samples.items():
            tps = tokens_per_step / median(secs)
            rows.append(
                {
                    "model": name,
                    "dtype": str(dtype).removeprefix("torch."),
                    "compile": compiled,
                    "tokens_per_s": tps,
                    "mfu": tps * flops[name] / peaks[dtype],
                    "ours_over_this": ours_tps / tps,
                    "tokens_per_cpu_s": tokens_per_step / median(cpu_samples[name]),
                    # CPU seconds per wall second: the torch thread count when the machine is free, ~1 when a
                    # neighbour holds a core
                    "cores_busy": median(cpu_samples[name]) / median(secs),
                    "ours_over_this_cpu": median(cpu_samples[name]) / ours_cpu,
                    # share of a step in matmul and attention kernels (one profiled step), and the ratio ours
                    # would reach over this contender if ours spent no time at all outside those kernels
                    "kernel_share": kernels[name],
                    "ceiling_over_this": median(secs) / (kernels["ours"] * median(samples["ours"])),
                    "flops_per_token": flops[name],
                    "step_seconds": secs,
                    "step_cpu_seconds": cpu_samples[name],
                }
            )

    targets = {}
    for row in rows:
        setting = f"{row['dtype']}/{'compiled' if row['compile'] else 'eager'}"
        if row["model"] == "llama":
            targets[f"ours >= 1.25x llama, {setting}"] = (
                f"{verdict(row['ours_over_this'], 1.25)}; ceiling {row['ceiling_over_this']:.2f}x"
            )
        if row["model"] == "nanogpt":
            targets[f"ours >= nanogpt loop, {setting}"] = verdict(row["ours_over_this"], 1.0)
        if row["model"] == "ours" and row["dtype"] == "bfloat16" and row["compile"]:
            targets["ours bf16 compiled MFU >= 45%"] = (
                f"{'met' if row['mfu'] >= 0.45 else 'NOT met'} ({100 * row['mfu']:.1f}%)"
            )

    for dtype, secs in matmul_seconds.items():
        print(f"{PEAK_MATMUL_SIZE}^3 matmul, {str(dtype).removeprefix('torch.')}: best {matmul_flops(min(secs)) / 1e9:.0f} "
              f"GFLOP/s (the MFU denominator), median {matmul_flops(median(secs)) / 1e9:.0f} GFLOP/s")
    print_table(
        [{**r, "mfu_%": 100 * r["mfu"], "kernel_%": 100 * r["kernel_share"]} for r in rows],
        ["model", "dtype", "compile", "tokens_per_s", "mfu_%", "ours_over_this", "tokens_per_cpu_s", "ours_over_this_cpu",
         "cores_busy", "kernel_%", "ceiling_over_this"],
        f"Training throughput, batch {size.batch_size} x context {size.context}, median of "
        f"{repeats[torch.float32]} (fp32) / {repeats[torch.bfloat16]} (bf16) interleaved steps after {warmup} warm-up",
    )
    for name, result in targets.items():
        print(f"  {name}: {result}")
    print("  torch._dynamo.explain graph breaks in a training forward: " + ", ".join(f"{k} {v}" for k, v in breaks.items()))
    payload = {
        "graph_breaks": breaks,
        "size": size.__dict__,
        "tokens_per_step": tokens_per_step,
        "peak_flops": {str(k).removeprefix("torch."): v for k, v in peaks.items()},
        "matmul_seconds": {str(k).removeprefix("torch."): v for k, v in matmul_seconds.items()},
        "warmup_steps": warmup,
        "repeats": {str(k).removeprefix("torch."): v for k, v in repeats.items()},
        "rows": rows,
        "targets": targets,
        "quick": quick,
    }
    print("wrote", write_results("train_quick" if quick else "train", payload))
    return payload


if __name__ == "__main__":
    run(parse_bench_args().quick)
