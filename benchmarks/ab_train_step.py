"""A/B of a training step: the model code of this checkout against the model code of a git revision.

For measuring one change to `modeling_custom_lm.py` (or the files it imports) on its own: both models hold
the same weights and run the step of `bench_train` (forward with labels, backward, fused AdamW), in one
process, with `LlamaForCausalLM` as a third contender; the order of the three rotates every round, so
neither sits always after the other. The revision's files are read with `git show` into a temporary
package, so the checkout is not touched. Not part of `make bench`.

    .venv/bin/python -m benchmarks.ab_train_step --revision 56f09c7 [--rounds 24] [--bf16]

Prints each contender's median step, the ratio of medians and the median of the per-round ratios (a
slow stretch of the machine then hits both sides of a ratio alike).
"""

import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

from benchmarks.bench_train import make_train_step
from benchmarks.common import Size, build_custom, build_llama

MODEL_FILES = ("configuration_custom_lm.py", "cache_custom_lm.py", "kernels_custom_lm.py", "modeling_custom_lm.py")
# Where the model files lie in a revision: the model folder, or the package root before it existed.
MODEL_FOLDERS = ("hf_custom_lm/model", "hf_custom_lm")


@dataclass
class ABArguments:
    revision: str = field(metadata={"help": "git revision whose model code is compared with the checkout's"})
    rounds: int = field(default=24, metadata={"help": "timed rounds, each one step of every contender"})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast instead of fp32"})


def model_class_at(revision: str, folder: Path) -> type:
    """`CustomLMForCausalLM` as the files of `revision` define it (a file missing there is skipped)."""
    package = folder / "hf_custom_lm_at_revision"
    package.mkdir()
    (package / "__init__.py").write_text("")
    root = Path(__file__).resolve().parent.parent
    for name in MODEL_FILES:
        for folder_name in MODEL_FOLDERS:
            shown = subprocess.run(
                ["git", "show", f"{revision}:{folder_name}/{name}"], cwd=root, capture_output=True, text=True
            )
            if shown.returncode == 0:
                (package / name).write_text(shown.stdout)
                break
        else:
            if name == "modeling_custom_lm.py":
                raise SystemExit(f"git show {revision}: no modeling_custom_lm.py in {MODEL_FOLDERS}")
    sys.path.insert(0, str(folder))
    return importlib.import_module("hf_custom_lm_at_revision.modeling_custom_lm").CustomLMForCausalLM


def main(args: ABArguments) -> dict:
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    size = Size()
    torch.manual_seed(0)
    data = torch.randint(0, size.vocab_size, (size.batch_size, size.context + 1))
    with tempfile.TemporaryDirectory() as folder:
        checkout = build_custom(size)
        at_revision = model_class_at(args.revision, Path(folder))(checkout.config)
        at_revision.load_state_dict(checkout.state_dict())
        models = {"checkout": checkout, args.revision: at_revision, "llama": build_llama(size, weights_from=checkout)}
        steps = {name: make_train_step("llama" if name == "llama" else "ours", model, data, dtype, False)
                 for name, model in models.items()}
        for step in steps.values():
            step(), step()
        seconds = {name: [] for name in steps}
        order = list(steps)
        for _ in range(args.rounds):
            for name in order:
                start = time.perf_counter()
                steps[name]()
                seconds[name].append(time.perf_counter() - start)
            order = order[1:] + order[:1]

    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"{str(dtype).removeprefix('torch.')} training step, batch {size.batch_size} x context {size.context}, "
          f"{args.rounds} rounds after 2 warm-up steps")
    for name, value in medians.items():
        print(f"  {name:>10}: median {1000 * value:.1f} ms")
    ratios = {}
    for other in (args.revision, "llama"):
        paired = statistics.median(o / c for o, c in zip(seconds[other], seconds["checkout"]))
        ratios[other] = (medians[other] / medians["checkout"], paired)
        print(f"  {other} / checkout: ratio of medians {ratios[other][0]:.3f}, median of per-round ratios {paired:.3f}")
    return {"medians": medians, "ratios": ratios}


if __name__ == "__main__":
    main(HfArgumentParser(ABArguments).parse_args_into_dataclasses()[0])
