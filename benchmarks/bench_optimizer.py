"""The optimizer step of `--hidden_optimizer muon` against torch's, for each shape the sizing chooses from.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_optimizer [--shapes 6] [--rounds 15]

For each shape: one forward and backward (batch 8 x 128, sampled softmax of 1024 draws, as a budgeted run
trains) gives the gradients, then the steps are timed in interleaved rounds on the CPU clock, median of the
rounds: `torch.optim.Muon` against `StackedMuon` (the same update, same-shape matrices batched) over the
decoder's matrices, and `torch.optim.AdamW` with its default foreach kernels against `fused=True` over the
rest (embeddings, norms). The step before is forward-backward + torch's Muon + foreach AdamW, the step now
forward-backward + `StackedMuon` + fused AdamW. Prints a table and writes benchmarks/results/optimizer.json.
"""

import argparse
import time

import torch

from benchmarks.common import native_bf16_cpu, print_table, write_results
from hf_custom_lm.model import CustomLMConfig, CustomLMForCausalLM
from hf_custom_lm.training.optimizers import hidden_and_other_parameters
from hf_custom_lm.training.sampled_softmax import CandidateSampler
from hf_custom_lm.training.sizing import SHAPES
from hf_custom_lm.training.stacked_muon import StackedMuon


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def time_shape(config: CustomLMConfig, batch_size: int, block_size: int, rounds: int) -> dict[str, float]:
    """Median CPU milliseconds of forward-backward and of each optimizer's step, over interleaved rounds."""
    model = CustomLMForCausalLM(config).train()
    model.loss_candidate_sampler = CandidateSampler(config.vocab_size, 1024)
    hidden, other = hidden_and_other_parameters(model)
    other = [p for _, p in other]
    muon = {"torch Muon": torch.optim.Muon(hidden, lr=1e-4, adjust_lr_fn="match_rms_adamw"),
            "StackedMuon": StackedMuon(hidden, lr=1e-4, adjust_lr_fn="match_rms_adamw")}
    adamw = {"AdamW foreach": torch.optim.AdamW(other, lr=1e-4, foreach=True),
             "AdamW fused": torch.optim.AdamW(other, lr=1e-4, fused=True)}
    steps = {**muon, **adamw}
    ids = torch.randint(0, config.vocab_size, (batch_size, block_size))

    def forward_backward():
        model.zero_grad(set_to_none=True)
        model(ids, labels=ids).loss.backward()

    times = {name: [] for name in ("forward-backward", *steps)}
    for round_ in range(rounds + 1):  # the first round warms up (allocations, oneDNN's kernel choice)
        for name, step in (("forward-backward", forward_backward), *((n, s.step) for n, s in steps.items())):
            start = time.process_time()
            step()
            if round_:
                times[name].append(time.process_time() - start)
    return {name: 1000 * median(values) for name, values in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab_size", type=int, default=8192)
    parser.add_argument("--shapes", type=int, default=6, help="the first this many of the sizing's shapes")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--block_size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    rows = []
    for hidden, layers, heads, intermediate, _ in SHAPES[:args.shapes]:
        config = CustomLMConfig(vocab_size=args.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                                num_attention_heads=heads, intermediate_size=intermediate,
                                max_position_embeddings=max(args.block_size, 256))
        ms = time_shape(config, args.batch_size, args.block_size, args.rounds)
        before = ms["forward-backward"] + ms["torch Muon"] + ms["AdamW foreach"]
        now = ms["forward-backward"] + ms["StackedMuon"] + ms["AdamW fused"]
        rows.append({"shape": f"{hidden} x {layers}", **{f"{name} ms": value for name, value in ms.items()},
                     "Muon torch / stacked": ms["torch Muon"] / ms["StackedMuon"],
                     "AdamW foreach / fused": ms["AdamW foreach"] / ms["AdamW fused"],
                     "step before / now": before / now})
    print_table(rows, list(rows[0]), f"CPU milliseconds ({torch.get_num_threads()} threads, fp32 model, bf16 "
                f"Newton-Schulz), native bf16: {native_bf16_cpu()}")
    path = write_results("optimizer", {"arguments": vars(args), "rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
