"""`--config_name auto`: the model shape for a time budget, from a throughput probe on this machine.

A short budget is best spent on a small model that sees many tokens, a long one on a larger model: each
candidate shape of `SHAPES` (smallest first) is timed for a few training steps on random tokens of the
run's batch shape, the tokens it would see in the budget are estimated from that, and the largest shape
that still sees `TOKENS_PER_PARAMETER` tokens per parameter (`MUON_TOKENS_PER_PARAMETER` under Muon) is
chosen (fewer where the training text is
short: a model that would go over it many times gains more from parameters than from passes), with the
learning rate measured best for it (used unless `--learning_rate` is given). With `--bf16` unset on a CPU
with native bf16 each shape is timed in both precisions and takes the faster: there a bf16 step of a narrow
model costs more than an fp32 one (the casts outweigh the matmuls), of a wide one less. The choice and the
reason are logged in one line and saved in the run folder (`sizing.json`).
"""

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..model import CustomLMConfig, CustomLMForCausalLM
from .arguments import DEFAULT_LEARNING_RATE
from .optimizers import MuonWithAdamW, hidden_and_other_parameters
from .sampled_softmax import CandidateSampler

logger = logging.getLogger(__name__)

# Candidate shapes, smallest first: (hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
# learning_rate), each the best measured at some budget (benchmarks/bench_quality.py, benchmarks/RESULTS.md;
# held-out Shakespeare, 8192-token tokenizer, one core, CPU clock): 64 x 2 at 150 CPU-s (2.040 against 2.059
# for 64 x 4), 64 x 4 at 300 (1.970 over two seeds, against 1.985 for 64 x 2 and 1.979 for 96 x 3), 96 x 3
# at 600 (1.921, against 1.924 for 64 x 4 over two seeds, 1.930 for 128 x 2 and 1.938 for 128 x 4). The
# learning rate is the best one measured at that width: at 64 wide 3e-3 gained 0.04 to 0.05 bits per byte
# over 1e-3 on both held-out texts; 128 wide scored the same at 1e-3 and 3e-3, and 256 wide lost with 3e-3.
# 96 wide takes 2e-3, between them (not tuned). 192 wide keeps the default 1e-3: at 300 CPU-s 2e-3 lost by 0.008
# to 0.015, and 6e-4 won on one text and lost on the other. Wider, not measured, keep 1e-3.
SHAPES = (
    (64, 2, 4, 176, 3e-3),
    (64, 4, 4, 176, 3e-3),
    (96, 3, 4, 256, 2e-3),
    (128, 2, 4, 344, 1e-3),
    (192, 3, 4, 512, 1e-3),
    (256, 4, 4, 688, 1e-3),
    (384, 6, 6, 1024, 1e-3),
    (512, 8, 8, 1376, 1e-3),
)
# Tokens per parameter (embeddings included) a shape must see within the budget, as the probe estimates it,
# to be chosen. 2.5 picks the shapes above at their budgets: the probe gave 64 x 4 1.6 tokens a parameter at
# 150 CPU-s and 3.2 at 300, 96 x 3 1.5 at 300 and 3.1 at 600, 128 x 2 2.2 at 600.
TOKENS_PER_PARAMETER = 2.5
# Under Muon, which learns more a token (at equal steps 0.013 to 0.044 bits per byte better than AdamW) and
# whose step costs up to a fifth more, a shape needs fewer: at 150 CPU-s on held-out Shakespeare on a CPU with
# AMX, with Muon, 128 x 2 at 1.8 tokens a parameter (2521 and 2429 steps) scored 1.9072 and 1.9030 where
# 64 x 4 at 3.2 (the rule of 2.5 chose it) scored 1.9133 (seed 0); with AdamW there 128 x 2 had beaten
# 64 x 4 by 0.045. 1.5 takes 128 x 2 there with room for the probe's error. The floor where the text runs
# short scales alike (0.8 x 1.5 / 2.5): at 300 CPU-s on the King James text the probe put Muon's 192 x 3 at
# 0.82 tokens a parameter in the seed-0 run (chosen: 1.2381) and under 0.8 in the seed-1 run (128 x 2
# instead: 1.2693).
MUON_TOKENS_PER_PARAMETER = 1.5
MUON_DATA_LIMITED_TOKENS_PER_PARAMETER = 0.48
# Short of text, a larger shape is also chosen if it still goes over the training text `DATA_LIMITED_EPOCHS`
# times and sees `DATA_LIMITED_TOKENS_PER_PARAMETER` tokens a parameter: beyond a few passes a small model's
# extra steps go over text it has seen, and more parameters gain more. Measured at 300 CPU-s on a CPU where
# 128 x 2 went over the text 4.4 to 8.4 times: 192 x 3 (2.4 to 4.4 passes, 1.2 to 1.3 tokens a parameter)
# scored 0.012 to 0.024 bits per byte better on both held-out texts, two seeds each; at 0.84 tokens a parameter
# (2.8 passes) 192 x 3 tied 128 x 2. At 600 CPU-s there, 256 x 4 (1.04 tokens a parameter, 3.7 and 6.2 passes)
# beat 192 x 3 (5.5 and 9.5 passes) by 0.026 and 0.048; at 300, 256 x 4 (0.47, 1.5 passes) lost by 0.012 to
# 0.021. The floor of 0.8 takes the first and not the second, with room for the probe's error (its step time
# moves by about 15% with the machine's other work). It keeps a small text from taking a model it cannot fill.
DATA_LIMITED_EPOCHS = 2.0
DATA_LIMITED_TOKENS_PER_PARAMETER = 0.8
# Past `MAX_EPOCHS` passes a model learns its training text more than the language, and more budget can make it
# worse: at 600 CPU-s on a CPU with AMX, 192 x 3 went over the King James text 9.5 times and scored 1.2845
# bits per byte, against 1.2537 to 1.2599 at 300 CPU-s (4.4 to 4.7 passes); 5.5 passes over Shakespeare still
# gained over 2.6. A shape that would go over the text more often gives way to the next larger one, below the
# floor of tokens a parameter, until one does not, but not to one under `MIN_TOKENS_PER_PARAMETER`: the fewest
# measured, 256 x 4 at 0.47 tokens a parameter, trained a usable model (1.899 against 1.878 to 1.887 for
# 192 x 3 at 300 CPU-s), and a tiny text should not bring the largest shape.
MAX_EPOCHS = 6.0
MIN_TOKENS_PER_PARAMETER = 0.4
# Timed steps per shape; their median is the estimate, so one step slowed by the machine's other work does not
# move the choice (with 2, the slower one was taken: a 300-CPU-s run chose 64 x 2 where its twin chose 64 x 4).
PROBE_STEPS = 5
SIZING_FILE = "sizing.json"
# The config fields a saved choice restores.
SHAPE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings")


@dataclass
class SizingChoice:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    learning_rate: float
    bf16: bool
    parameters: int
    seconds_per_step: float
    expected_steps: int
    expected_tokens: int
    reason: str


def time_training_step(config: CustomLMConfig, batch_size: int, block_size: int, clock, sampled_softmax: int = 0,
                       device: str | torch.device = "cpu", bf16: bool = False,
                       hidden_optimizer: str = "adamw") -> float:
    """Median of `PROBE_STEPS` timed training steps (forward, backward, optimizer) after one warm-up step, on the
    run's device and under its bf16 autocast (on a CPU with AMX a bf16 step can cost a fraction of an fp32 one,
    on a GPU a step is a fraction of a CPU's); with `sampled_softmax` draws, steps of the sampled softmax that
    the run takes before its learning rate decays; with `hidden_optimizer` `muon`, Muon's step (its
    Newton-Schulz iterations add to every step, most to a small model's) beside AdamW's."""
    device = torch.device(device)
    model = CustomLMForCausalLM(config).to(device).train()
    if sampled_softmax:
        model.loss_candidate_sampler = CandidateSampler(config.vocab_size, sampled_softmax)
    # AdamW fused, as the default `--optim adamw_torch_fused` takes it
    if hidden_optimizer == "muon":
        hidden, other = hidden_and_other_parameters(model)
        optimizer = MuonWithAdamW([{"params": hidden}], [{"params": [p for _, p in other]}], lr=1e-4, fused=True)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(0, config.vocab_size, (batch_size, block_size), device=device)
    times = []
    for step in range(PROBE_STEPS + 1):
        start = clock()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # kernels run asynchronously: count the step, not its launch
        if step:
            times.append(clock() - start)
    return sorted(times)[len(times) // 2]


def size_for_budget(
    budget_seconds: float, batch_size: int, block_size: int, vocab_size: int, clock_kind: str = "wall",
    train_tokens: int | None = None, sampled_softmax: int = 0, device: str | torch.device = "cpu",
    bf16: bool | None = False, processes: int = 1, hidden_optimizer: str = "adamw", **config_kwargs,
) -> SizingChoice:
    """The largest shape of `SHAPES` that sees `TOKENS_PER_PARAMETER` tokens per parameter in the budget, or,
    given `train_tokens` (the training text's size), `DATA_LIMITED_TOKENS_PER_PARAMETER` while going over that
    text `DATA_LIMITED_EPOCHS` times (the smallest shape if none does); then, while that shape would go over
    the text more than `MAX_EPOCHS` times, the next larger one that sees `MIN_TOKENS_PER_PARAMETER`.
    `sampled_softmax`: the draws a step of the run's sampled softmax, which the probe's steps then take;
    `device` and `bf16`: where the run trains and whether under bf16 autocast, which the probe's steps copy;
    `bf16=None` times both precisions and takes the faster for each shape. `processes`: the data-parallel
    processes, each taking a step of `batch_size` blocks at once, so the model sees that many times the tokens
    of one. `hidden_optimizer`: the run's, whose step the probe takes; with `muon` a shape must see
    `MUON_TOKENS_PER_PARAMETER` tokens a parameter instead of `TOKENS_PER_PARAMETER` (and, short of text,
    `MUON_DATA_LIMITED_TOKENS_PER_PARAMETER`)."""
    clock = time.process_time if clock_kind == "cpu" else time.monotonic
    tokens_per_step = batch_size * block_size * processes
    muon = hidden_optimizer == "muon"
    tokens_per_parameter = MUON_TOKENS_PER_PARAMETER if muon else TOKENS_PER_PARAMETER
    data_limited_floor = MUON_DATA_LIMITED_TOKENS_PER_PARAMETER if muon else DATA_LIMITED_TOKENS_PER_PARAMETER
    chosen = None
    for hidden, layers, heads, intermediate, learning_rate in SHAPES:
        config = CustomLMConfig(**{"max_position_embeddings": max(block_size, 256), **config_kwargs},
                                vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                                num_attention_heads=heads, intermediate_size=intermediate)
        parameters = CustomLMForCausalLM(config).num_parameters()
        precisions = (False, True) if bf16 is None else (bf16,)
        timed = {on: time_training_step(config, batch_size, block_size, clock, sampled_softmax, device, on,
                                        hidden_optimizer) for on in precisions}
        shape_bf16 = min(timed, key=timed.get)
        per_step = timed[shape_bf16]
        steps = int(budget_seconds / per_step)
        tokens = steps * tokens_per_step
        data_limited = bool(train_tokens) and tokens >= DATA_LIMITED_EPOCHS * train_tokens
        fits = tokens >= (data_limited_floor if data_limited else tokens_per_parameter) * parameters
        # the shape chosen so far would go over the text more than `MAX_EPOCHS` times: this one replaces it
        overfits = (bool(train_tokens) and chosen is not None and chosen.expected_tokens > MAX_EPOCHS * train_tokens
                    and tokens >= MIN_TOKENS_PER_PARAMETER * parameters)
        if chosen is None or fits or overfits:
            epochs = f", {tokens / train_tokens:.2g} epochs of the training text" if train_tokens else ""
            rule = (f"{data_limited_floor} tokens per parameter going over the text "
                    f"{DATA_LIMITED_EPOCHS:g} times or more" if data_limited
                    else f"{tokens_per_parameter} tokens per parameter")
            reason = (
                f"{parameters / 1e6:.2f}M parameters at {per_step:.3g} s a step ({clock_kind} clock"
                + (", bf16" if shape_bf16 else "")
                + (f" against {timed[False]:.3g} in fp32" if shape_bf16 and False in timed else "")
                + (f", faster than {timed[True]:.3g} in bf16" if not shape_bf16 and True in timed else "")
                + (f", sampled softmax of {sampled_softmax} draws" if sampled_softmax else "")
                + (", Muon" if hidden_optimizer == "muon" else "")
                + ") see about "
                f"{tokens:,} tokens in {budget_seconds:g} s ({tokens / parameters:.2g} per parameter{epochs}); "
                + ("the largest shape that sees " + rule if fits
                   else f"fewer tokens per parameter than the rule's, as the next smaller shape would go over the "
                   f"text more than {MAX_EPOCHS:g} times" if overfits
                   else "no shape sees " + rule)
            )
            chosen = SizingChoice(hidden, layers, heads, intermediate, learning_rate, shape_bf16, parameters,
                                  per_step, steps, tokens, reason)
        if not (fits or overfits):
            break
    return chosen


def save_sizing(choice: SizingChoice, output_dir: str | Path) -> Path:
    path = Path(output_dir) / SIZING_FILE
    path.write_text(json.dumps(asdict(choice), indent=2))
    return path


def size_model(training_args, data_args, tokenizer, resuming: bool, sampled_softmax: int = 0,
               train_tokens: int | None = None) -> dict:
    """The shape for the budget: the one saved in the run folder (a resumed run, or the other processes of a
    multi-process run after the main one), else a new choice, logged and saved. Without `--learning_rate` the
    run takes the shape's learning rate (`training_args.learning_rate` is set here, before the optimizer).
    `train_tokens`: the packed training text's tokens (None for a stream)."""
    saved = Path(training_args.output_dir) / SIZING_FILE
    fresh = not (saved.is_file() and (resuming or not training_args.should_save))
    if not fresh:
        choice = json.loads(saved.read_text())
    else:
        sized = size_for_budget(
            training_args.max_train_seconds, training_args.per_device_train_batch_size
            * training_args.gradient_accumulation_steps, data_args.block_size, len(tokenizer),
            training_args.train_time_clock, max_position_embeddings=max(data_args.block_size, 256),
            bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, train_tokens=train_tokens, sampled_softmax=sampled_softmax,
            device=training_args.device, processes=training_args.world_size,
            bf16=None if getattr(training_args, "bf16_from_probe", False) else bool(training_args.bf16),
            hidden_optimizer=training_args.hidden_optimizer or "adamw",
        )
        if training_args.should_save:
            save_sizing(sized, training_args.output_dir)
        choice = asdict(sized)
    # Unset on the command line and not changed since (files of older runs have no rate)
    unset = getattr(training_args, "learning_rate_from_sizing", False)
    unset = unset and training_args.learning_rate == DEFAULT_LEARNING_RATE
    if unset and "learning_rate" in choice:
        training_args.learning_rate = choice["learning_rate"]
    if getattr(training_args, "bf16_from_probe", False) and "bf16" in choice:
        training_args.set_bf16(choice["bf16"])
    if fresh:
        logger.info(f"Model size for the budget: hidden_size={choice['hidden_size']}, layers="
                    f"{choice['num_hidden_layers']}, learning_rate={training_args.learning_rate:g}, "
                    f"bf16={training_args.bf16}: {choice['reason']}.")
    shape = {key: value for key, value in choice.items() if key in SHAPE_KEYS}
    return shape | {"max_position_embeddings": max(data_args.block_size, 256)}
