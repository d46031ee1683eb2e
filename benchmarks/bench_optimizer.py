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

import torch

from benchmarks.common import (add_sizing_shape_arguments, interleaved, median, native_bf16_cpu, print_table,
                               sizing_shape_configs, write_results)
from hf_custom_lm.model import CustomLMConfig, CustomLMForCausalLM
from hf_custom_lm.training.optimizers import hidden_and_other_parameters
from hf_custom_lm.training.sampled_softmax import CandidateSampler
from hf_custom_lm.training.stacked_muon import StackedMuon


def time_shape(config: CustomLMConfig, batch_size: int, block_size: int, rounds: int) -> dict[str, float]:
    """Median CPU milliseconds of forward-backward and of each optimizer's step, over interleaved rounds."""
    model = CustomLMForCausalLM(config).train()
    model.loss_candidate_sampler = CandidateSampler(config.vocab_size, 1024)
    hidden, other = hidden_and_other_parameters(model)
    other = [p for _, p in other]
    ids = torch.randint(0, config.vocab_size, (batch_size, block_size))

    def forward_backward():
        model.zero_grad(set_to_none=True)
        model(ids, labels=ids).loss.backward()

    contenders = {"forward-backward": forward_backward}
    for name, optimizer in (
        ("torch Muon", torch.optim.Muon(hidden, lr=1e-4, adjust_lr_fn="match_rms_adamw")),
        ("StackedMuon", StackedMuon(hidden, lr=1e-4, adjust_lr_fn="match_rms_adamw")),
        ("AdamW foreach", torch.optim.AdamW(other, lr=1e-4, foreach=True)),
        ("AdamW fused", torch.optim.AdamW(other, lr=1e-4, fused=True)),
    ):
        contenders[name] = optimizer.step
    _, cpu = interleaved(contenders, warmup=1, repeats=rounds)
    return {name: 1000 * median(seconds) for name, seconds in cpu.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_sizing_shape_arguments(parser)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    rows = []
    for shape, config in sizing_shape_configs(args):
        ms = time_shape(config, args.batch_size, args.block_size, args.rounds)
        before = ms["forward-backward"] + ms["torch Muon"] + ms["AdamW foreach"]
        now = ms["forward-backward"] + ms["StackedMuon"] + ms["AdamW fused"]
        rows.append({"shape": shape, **{f"{name} ms": value for name, value in ms.items()},
                     "Muon torch / stacked": ms["torch Muon"] / ms["StackedMuon"],
                     "AdamW foreach / fused": ms["AdamW foreach"] / ms["AdamW fused"],
                     "step before / now": before / now})
    print_table(rows, list(rows[0]), f"CPU milliseconds ({torch.get_num_threads()} threads, fp32 model, bf16 "
                f"Newton-Schulz), native bf16: {native_bf16_cpu()}")
    path = write_results("optimizer", {"arguments": vars(args), "rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
