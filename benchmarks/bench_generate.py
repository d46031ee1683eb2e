"""Generation: our CustomLMForCausalLM vs transformers' LlamaForCausalLM holding the same weights.

Greedy decoding of `new_tokens` tokens after a `prompt`-token prompt, batch 1 and 8, with the dynamic
cache, the static cache, and the static cache with the decoding step compiled (`CompileConfig`, which
`generate` applies on CPU when asked to). End-of-sequence is disabled so every run makes the same number
of tokens. "dynamic" is the cache each model gets by default: transformers' `DynamicCache`, whose layers
concatenate, for Llama; the same class with layers that append in place for ours. Tokens/s counts new
tokens of the whole batch; time to first token is a `max_new_tokens=1` call (prompt forward + one
token). Both models must produce the same tokens: that is checked, not assumed.

    .venv/bin/python -m benchmarks.bench_generate [--quick]
"""

import torch
from transformers import CompileConfig, GenerationConfig

from benchmarks.common import (
    Size,
    build_custom,
    build_llama,
    interleaved,
    median,
    parse_bench_args,
    print_table,
    verdict,
    write_results,
)

MODES = ("dynamic", "static", "static+compile")


def generation_config(mode: str, new_tokens: int) -> GenerationConfig:
    config = GenerationConfig(
        max_new_tokens=new_tokens,
        do_sample=False,
        eos_token_id=None,  # never stop early: every contender makes exactly `new_tokens` tokens
        pad_token_id=1,
    )
    if mode != "dynamic":
        config.cache_implementation = "static"
    if mode == "static+compile":
        config.compile_config = CompileConfig(fullgraph=True, mode="default")
        config.compile_config._compile_all_devices = True  # generate compiles on GPUs only unless told
    else:
        config.disable_compile = True
    return config


def run(quick: bool = False) -> dict:
    prompt_len, new_tokens = (16, 16) if quick else (64, 128)
    batches = (1, 2) if quick else (1, 8)
    warmup, repeats = (1, 1) if quick else (2, 9)  # 9: one generate call is short, the machine is shared
    size = Size()
    ours = build_custom(size).eval()
    llama = build_llama(size, weights_from=ours).eval()
    models = {"ours": ours, "llama": llama}

    rows, same_tokens = [], {}
    for batch in batches:
        torch.manual_seed(batch)
        prompt = torch.randint(2, size.vocab_size, (batch, prompt_len))
        mask = torch.ones_like(prompt)
        for mode in MODES:
            torch._dynamo.reset()
            full, first = generation_config(mode, new_tokens), generation_config(mode, 1)
            outputs = {}

            def generate(name, config):
                def call():
                    with torch.inference_mode():
                        outputs[name] = models[name].generate(prompt, attention_mask=mask, generation_config=config)

                return call

            decode, decode_cpu = interleaved({n: generate(n, full) for n in models}, warmup=warmup, repeats=repeats)
            same_tokens[f"batch {batch}, {mode}"] = torch.equal(outputs["ours"], outputs["llama"])
            ttft, _ = interleaved({n: generate(n, first) for n in models}, warmup=warmup, repeats=repeats)
            for name in models:
                rows.append(
                    {
                        "model": name,
                        "batch": batch,
                        "mode": mode,
                        "tokens_per_s": batch * new_tokens / median(decode[name]),
                        "ttft_ms": 1000 * median(ttft[name]),
                        "tokens_per_cpu_s": batch * new_tokens / median(decode_cpu[name]),
                        "seconds": decode[name],
                        "cpu_seconds": decode_cpu[name],
                        "ttft_seconds": ttft[name],
                    }
                )

    def tps(model, batch, mode):
        return next(r["tokens_per_s"] for r in rows if (r["model"], r["batch"], r["mode"]) == (model, batch, mode))

    targets = {}
    for row in rows:
        row["ours_over_llama"] = tps("ours", row["batch"], row["mode"]) / tps("llama", row["batch"], row["mode"])
        if row["model"] == "llama":
            targets[f"ours >= 1.2x llama, batch {row['batch']}, {row['mode']}"] = verdict(row["ours_over_llama"], 1.2)
    for batch in batches:
        gain = tps("ours", batch, "static+compile") / tps("ours", batch, "dynamic")
        targets[f"ours static+compile >= 2x ours dynamic, batch {batch}"] = verdict(gain, 2.0)

    print_table(
        rows,
        ["model", "batch", "mode", "tokens_per_s", "ttft_ms", "ours_over_llama", "tokens_per_cpu_s"],
        f"Greedy generation, prompt {prompt_len} + {new_tokens} new tokens, median of {repeats}",
    )
    for name, same in same_tokens.items():
        print(f"  same tokens as llama, {name}: {same}")
    for name, result in targets.items():
        print(f"  {name}: {result}")
    payload = {
        "prompt_tokens": prompt_len,
        "new_tokens": new_tokens,
        "rows": rows,
        "same_tokens_as_llama": same_tokens,
        "targets": targets,
        "quick": quick,
    }
    print("wrote", write_results("generate_quick" if quick else "generate", payload))
    return payload


if __name__ == "__main__":
    run(parse_bench_args().quick)
