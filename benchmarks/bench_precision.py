"""The training step of each shape the sizing chooses from, in fp32 and under bf16 autocast, on this CPU.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_precision [--vocab_size 8192] [--shapes 6]

The step is the sizing probe's own (`sizing.time_training_step`: forward, backward and AdamW on batch 8 x 128,
median of its timed steps, CPU clock), with the full softmax and with the sampled one (1024 draws) that a
budgeted run takes before its decay. On a CPU without native bf16 (AVX512-BF16 or AMX) bf16 is emulated and
the answer is known (fp32); with it, the ratio says which shapes a `train` run with `--bf16` unset takes in
bf16. Prints a table and writes benchmarks/results/precision.json.
"""

import argparse
import time

import torch

from benchmarks.common import (add_sizing_shape_arguments, native_bf16_cpu, print_table, sizing_shape_configs,
                               write_results)
from hf_custom_lm.training.sizing import time_training_step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_sizing_shape_arguments(parser)
    args = parser.parse_args(argv)
    rows = []
    for shape, config in sizing_shape_configs(args):
        row = {"shape": shape}
        for precision, bf16 in (("fp32", False), ("bf16", True)):
            for softmax, draws in (("full", 0), ("sampled", 1024)):
                row[f"{precision} {softmax} s"] = time_training_step(
                    config, args.batch_size, args.block_size, time.process_time, draws, "cpu", bf16)
        row["bf16 / fp32 full"] = row["bf16 full s"] / row["fp32 full s"]
        row["bf16 / fp32 sampled"] = row["bf16 sampled s"] / row["fp32 sampled s"]
        rows.append(row)
    print_table(rows, list(rows[0]), f"Seconds a training step ({torch.get_num_threads()} threads), native bf16: "
                f"{native_bf16_cpu()}")
    path = write_results("precision", {"arguments": vars(args), "rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
