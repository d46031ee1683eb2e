"""Training throughput: our CustomLMForCausalLM vs transformers' LlamaForCausalLM and GPT2LMHeadModel and a
hand-written nanoGPT-style model, same size, fp32 and bf16 autocast, eager and torch.compile.

A step is forward with labels + backward + AdamW step (`fused=True`, the Trainer's default optimizer on
torch >= 2.8, for every contender). MFU = model FLOPs per second / the best FLOP/s of a large matmul in
the same dtype, measured in this run.

    .venv/bin/python benchmarks/bench_train.py [--quick]
"""

import torch

from benchmarks.common import (
    Size,
    build_custom,
    build_gpt2,
    build_llama,
    build_nanogpt,
    interleaved,
    measure_peak_matmul,
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


def run(quick: bool = False) -> dict:
    size = Size(batch_size=4, context=128) if quick else Size()
    warmup, repeats, calls = (2, 1, 1) if quick else (3, 5, 2)
    tokens_per_step = size.batch_size * size.context
    torch.manual_seed(0)
    data = torch.randint(0, size.vocab_size, (size.batch_size, size.context + 1))

    peaks = {dtype: measure_peak_matmul(dtype) for dtype in (torch.float32, torch.bfloat16)}
    rows = []
    for compiled in (False, True):
        for dtype in (torch.float32, torch.bfloat16):
            torch._dynamo.reset()
            models = {name: build(size) for name, build in BUILDERS.items()}
            steps = {name: make_train_step(name, m, data, dtype, compiled) for name, m in models.items()}
            samples = interleaved(steps, warmup=warmup, repeats=repeats, calls_per_sample=calls)
            ours_tps = tokens_per_step / median(samples["ours"])
            for name, secs in samples.items():
                tps = tokens_per_step / median(secs)
                flops = train_flops_per_token(models[name], size)
                rows.append(
                    {
                        "model": name,
                        "dtype": str(dtype).removeprefix("torch."),
                        "compile": compiled,
                        "tokens_per_s": tps,
                        "mfu": tps * flops / peaks[dtype],
                        "ours_over_this": ours_tps / tps,
                        "flops_per_token": flops,
                        "step_seconds": secs,
                    }
                )
            del models, steps

    targets = {}
    for row in rows:
        setting = f"{row['dtype']}/{'compiled' if row['compile'] else 'eager'}"
        if row["model"] == "llama":
            targets[f"ours >= 1.25x llama, {setting}"] = verdict(row["ours_over_this"], 1.25)
        if row["model"] == "nanogpt":
            targets[f"ours >= nanogpt loop, {setting}"] = verdict(row["ours_over_this"], 1.0)
        if row["model"] == "ours" and row["dtype"] == "bfloat16" and row["compile"]:
            targets["ours bf16 compiled MFU >= 45%"] = (
                f"{'met' if row['mfu'] >= 0.45 else 'NOT met'} ({100 * row['mfu']:.1f}%)"
            )

    print(f"peak matmul: fp32 {peaks[torch.float32] / 1e9:.0f} GFLOP/s, bf16 {peaks[torch.bfloat16] / 1e9:.0f} GFLOP/s")
    print_table(
        [{**r, "mfu_%": 100 * r["mfu"]} for r in rows],
        ["model", "dtype", "compile", "tokens_per_s", "mfu_%", "ours_over_this"],
        f"Training throughput, batch {size.batch_size} x context {size.context}, median of {repeats} x {calls} steps",
    )
    for name, result in targets.items():
        print(f"  {name}: {result}")
    payload = {
        "size": size.__dict__,
        "tokens_per_step": tokens_per_step,
        "peak_flops": {str(k).removeprefix("torch."): v for k, v in peaks.items()},
        "rows": rows,
        "targets": targets,
        "quick": quick,
    }
    print("wrote", write_results("train_quick" if quick else "train", payload))
    return payload


if __name__ == "__main__":
    run(parse_bench_args().quick)
