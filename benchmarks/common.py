"""Shared pieces of the side-by-side benchmarks: model builders at one size, FLOP counts, the machine's
measured matmul peak, interleaved timing, tables and JSON results.

Every benchmark builds OUR model and its PEERS at the same width, depth, vocabulary, context and batch,
then times them interleaved (ours, peer, ours, peer, ...) after a warm-up, so that a slow-down of the
machine part-way through hits every contender alike; it reports medians over the repeats.
"""

import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Other processes on a shared machine slow every contender; the load average is recorded with the results.
LOAD_AT_START = os.getloadavg()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import transformers  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, HfArgumentParser, LlamaForCausalLM  # noqa: E402

from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM  # noqa: E402
from hf_custom_lm.hub.llama import to_llama, to_llama_config  # noqa: E402
from hf_custom_lm.training.sizing import SHAPES  # noqa: E402


@dataclass(frozen=True)
class Size:
    """The one size every contender is built at (the reference of the benchmark brief)."""

    vocab_size: int = 8192
    hidden_size: int = 256
    intermediate_size: int = 688  # SwiGLU width of the "small" preset; GPT-2 uses its own 4 * hidden
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    context: int = 256
    batch_size: int = 16


def custom_config(size: Size) -> CustomLMConfig:
    return CustomLMConfig(
        vocab_size=size.vocab_size,
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        max_position_embeddings=max(size.context, 512),
    )


def build_custom(size: Size, seed: int = 0) -> CustomLMForCausalLM:
    torch.manual_seed(seed)
    return CustomLMForCausalLM(custom_config(size))


def build_llama(size: Size, seed: int = 0, weights_from: CustomLMForCausalLM | None = None) -> LlamaForCausalLM:
    """Llama at the same size (the config our state dict loads into); with `weights_from`, a twin holding
    exactly those weights."""
    if weights_from is not None:
        return to_llama(weights_from)
    torch.manual_seed(seed)
    return LlamaForCausalLM(to_llama_config(custom_config(size)))


def build_gpt2(size: Size, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=size.vocab_size,
            n_embd=size.hidden_size,
            n_layer=size.num_hidden_layers,
            n_head=size.num_attention_heads,
            n_positions=max(size.context, 512),
            bos_token_id=0,
            eos_token_id=0,
        )
    )


def build_nanogpt(size: Size, seed: int = 0):
    from benchmarks.nanogpt_reference import GPT, GPTConfig

    torch.manual_seed(seed)
    return GPT(
        GPTConfig(
            vocab_size=size.vocab_size,
            n_embd=size.hidden_size,
            n_layer=size.num_hidden_layers,
            n_head=size.num_attention_heads,
            block_size=max(size.context, 512),
        )
    )


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters that take part in a matmul per token: all of them (the tied token embedding counts
    once, as the output projection) except position tables, which are only looked up."""
    seen, total = set(), 0
    for name, param in model.named_parameters():
        if id(param) in seen or name.endswith(("wpe.weight", "embed_positions.weight")):
            continue
        seen.add(id(param))
        total += param.numel()
    return total


def train_flops_per_token(model: torch.nn.Module, size: Size) -> float:
    """PaLM / nanoGPT convention: 6 N (forward + backward of every weight) + 12 L D T (attention
    scores and values, forward + backward, counted without the causal halving)."""
    return 6 * matmul_params(model) + 12 * size.num_hidden_layers * size.hidden_size * size.context


PEAK_MATMUL_SIZE = 2048


def matmul_call(dtype: torch.dtype, n: int = PEAK_MATMUL_SIZE) -> Callable[[], None]:
    """One (n, n) @ (n, n) matmul in `dtype`: 2 n^3 FLOPs. Timed among the contenders, its best time gives
    the machine's peak FLOP/s for that dtype under the same conditions (the MFU denominator)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    return lambda: torch.mm(a, b)


def matmul_flops(seconds: float, n: int = PEAK_MATMUL_SIZE) -> float:
    return 2 * n**3 / seconds


# The kernels every contender needs in the same number: matrix products and fused attention (forward and
# backward). What a step spends outside them (elementwise work, the loss, copies, Python) is what a model's
# implementation can remove.
KERNEL_OPS = frozenset(
    {
        "aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm",
        "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
        "mkldnn::_linear_pointwise",
    }
)


def kernel_share(fn: Callable[[], None]) -> float:
    """The fraction of one call of `fn` spent inside `KERNEL_OPS` (self time: a kernel's own time, not
    counting ops it calls), from one run under torch.profiler. A fraction of the same profiled call, so a
    slow-down of that one call cancels out; the profiler's own cost, larger for many small ops, lowers it
    a little."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        fn()
        wall = time.perf_counter() - start
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in KERNEL_OPS) / 1e6 / wall


def interleaved(
    contenders: dict[str, Callable[[], None]], warmup: int, repeats: int, calls_per_sample: int = 1
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per call of each contender, sampled round-robin: ours, peer, ..., ours, peer, ...

    Each contender runs `warmup` untimed calls first (compilation, allocator, caches), then each round
    times `calls_per_sample` consecutive calls of every contender in turn. Returns wall-clock seconds and
    CPU seconds of this process (all threads): on a loaded machine the second moves far less.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    wall = {name: [] for name in contenders}
    cpu = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            gc.collect()
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(calls_per_sample):
                fn()
            wall[name].append((time.perf_counter() - start) / calls_per_sample)
            cpu[name].append((time.process_time() - start_cpu) / calls_per_sample)
    return wall, cpu


def add_sizing_shape_arguments(parser) -> None:
    """The step benchmarks' arguments for the sizing's candidate shapes (`sizing_shape_configs`)."""
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--shapes", type=int, default=6, help="the first this many of the sizing's shapes")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--block_size", type=int, default=128)


def sizing_shape_configs(args) -> list[tuple[str, CustomLMConfig]]:
    """("hidden x layers", config) for the first `args.shapes` of the sizing's candidate shapes."""
    return [(f"{hidden} x {layers}", CustomLMConfig(
        vocab_size=args.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=intermediate, max_position_embeddings=max(args.block_size, 256)))
        for hidden, layers, heads, intermediate, _ in SHAPES[:args.shapes]]


def median(values: list[float]) -> float:
    return statistics.median(values)


def environment() -> dict:
    cpu = platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "native_bf16_matmul": native_bf16_cpu(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP default)"),
        "load_average_1_5_15min_at_start": LOAD_AT_START,
        "load_average_1_5_15min_at_end": os.getloadavg(),
    }


def native_bf16_cpu() -> bool:
    """Whether this CPU has bf16 matmul instructions (AVX512-BF16 or AMX); without them bf16 is emulated."""
    return any(getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def write_results(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **payload}, indent=2) + "\n")
    return path


def print_table(rows: list[dict], columns: list[str], title: str) -> None:
    """A plain fixed-width table; floats are shown with a precision fit for their size."""

    def fmt(value):
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return "" if value is None else str(value)

    cells = [[fmt(row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(c[i]) for c in cells)) for i, col in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(col.ljust(w) for col, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


@dataclass
class BenchArguments:
    quick: bool = field(default=False, metadata={"help": "A fast sanity pass: fewer repeats, a smaller batch."})


def parse_bench_args(argv: list[str] | None = None) -> BenchArguments:
    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses(args=argv)
    return args


def verdict(ratio: float, target: float) -> str:
    return f"{'met' if ratio >= target else 'NOT met'} ({ratio:.2f}x vs >= {target}x)"
