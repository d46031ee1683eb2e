"""Generation in llama.cpp from our GGUF export, next to ours in transformers: the same model, batch 1.

Greedy decoding of `new_tokens` tokens after a `prompt`-token prompt at the reference size
(`common.Size`): ours is `generate()` with the default dynamic cache (as `bench_generate.py`'s
"dynamic" row), llama.cpp is llama-cpp-python evaluating the prompt then one token at a time, picked by
llama.cpp's greedy sampler, from the f32, f16 and q8_0 files `hub.gguf.write_gguf` wrote for the same
weights. End-of-sequence is disabled so every run makes the same number of tokens; tokens/s counts new
tokens over the whole call (prompt included), timed interleaved, with every contender on 1 thread and
then on torch's thread count.
Whether the f32 file gives our tokens is reported, not required: the weights are random, so top logits
are nearly tied (`tests/interop` checks equality on a trained model).

Needs llama-cpp-python (`make test-interop` installs it and runs this script).

    .venv/bin/python -m benchmarks.bench_gguf [--quick]
"""

import tempfile
from pathlib import Path

import llama_cpp
import torch

from benchmarks.bench_generate import generation_config
from benchmarks.common import Size, build_custom, interleaved, median, parse_bench_args, print_table, write_results
from hf_custom_lm.hub.gguf import write_gguf
from hf_custom_lm.training.tokenization import load_tokenizer

GGUF_TYPES = ("f32", "f16", "q8_0")


def llama_cpp_generate(llm: llama_cpp.Llama, prompt: list[int], new_tokens: int) -> list[int]:
    llm.reset()
    llm.eval(prompt)
    tokens = []
    for _ in range(new_tokens):
        tokens.append(llm.sample(temp=0.0))  # llama.cpp's greedy sampler on the last position's logits
        llm.eval(tokens[-1:])
    return tokens


def measure(ours, tokenizer, prompt: torch.Tensor, new_tokens: int, threads: int, warmup: int, repeats: int):
    """Interleaved timing of ours and the three llama.cpp files, everyone on `threads` threads."""
    torch.set_num_threads(threads)
    config = generation_config("dynamic", new_tokens)
    outputs = {}

    def ours_call():
        with torch.inference_mode():
            out = ours.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=config)
        outputs["ours"] = out[0, prompt.shape[1]:].tolist()

    contenders = {"ours (transformers, f32)": ours_call}
    with tempfile.TemporaryDirectory() as folder:
        engines = {}
        for gguf_type in GGUF_TYPES:
            path = write_gguf(ours, tokenizer, Path(folder), gguf_type=gguf_type)
            engines[gguf_type] = llama_cpp.Llama(
                model_path=str(path), n_ctx=prompt.shape[1] + new_tokens, n_batch=prompt.shape[1],
                n_threads=threads, n_threads_batch=threads, verbose=False,
            )

        def llama_call(gguf_type):
            def call():
                outputs[gguf_type] = llama_cpp_generate(engines[gguf_type], prompt[0].tolist(), new_tokens)

            return call

        for gguf_type in GGUF_TYPES:
            contenders[f"llama.cpp ({gguf_type})"] = llama_call(gguf_type)
        wall, cpu = interleaved(contenders, warmup=warmup, repeats=repeats)

    ours_tps = new_tokens / median(wall["ours (transformers, f32)"])
    rows = [
        {
            "engine": name,
            "threads": threads,
            "tokens_per_s": new_tokens / median(wall[name]),
            "over_ours": new_tokens / median(wall[name]) / ours_tps,
            "tokens_per_cpu_s": new_tokens / median(cpu[name]),
            "seconds": wall[name],
            "cpu_seconds": cpu[name],
        }
        for name in contenders
    ]
    same = next(i for i, (a, b) in enumerate(zip([*outputs["f32"], None], [*outputs["ours"], -1])) if a != b)
    return rows, same


def run(quick: bool = False) -> dict:
    prompt_len, new_tokens = (16, 16) if quick else (64, 128)
    warmup, repeats = (1, 1) if quick else (2, 7)
    size = Size()
    ours = build_custom(size).eval()
    tokenizer = load_tokenizer()
    prompt = torch.randint(2, size.vocab_size, (1, prompt_len), generator=torch.Generator().manual_seed(1))
    rows, same = [], {}
    # One thread as well as all: llama.cpp's threads meet at a spinning barrier after every op, so on a
    # loaded machine a descheduled partner stalls it far more than it stalls torch.
    for threads in sorted({1, torch.get_num_threads()}):
        thread_rows, same[threads] = measure(ours, tokenizer, prompt, new_tokens, threads, warmup, repeats)
        rows += thread_rows
    print_table(
        rows, ["engine", "threads", "tokens_per_s", "over_ours", "tokens_per_cpu_s"],
        f"Greedy generation, batch 1, prompt {prompt_len} + {new_tokens} new tokens, median of {repeats}",
    )
    for threads, agreeing in same.items():
        print(f"  {threads} thread(s): llama.cpp f32 agrees with ours on the first {agreeing} of {new_tokens} tokens")
    payload = {
        "prompt_tokens": prompt_len,
        "new_tokens": new_tokens,
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_system_info": llama_cpp.llama_print_system_info().decode(),
        "rows": rows,
        "f32_tokens_agreeing_with_ours": same,
        "quick": quick,
    }
    print("  llama.cpp", payload["llama_cpp_python"], payload["llama_cpp_system_info"])
    print("wrote", write_results("gguf_quick" if quick else "gguf", payload))
    return payload


if __name__ == "__main__":
    run(parse_bench_args().quick)
