"""Framework overhead: training our model through the project's Trainer path vs a raw PyTorch loop.

The Trainer path is `hf_custom_lm.training.CustomLMTrainer` with `LMTrainingArguments` and the callbacks
`train_language_model` installs (its defaults: fused AdamW, cosine schedule with warm-up, gradient
clipping at 1.0, a log every 10 steps, bf16 autocast only where the CPU runs bf16 natively), with
evaluation, checkpoints, reporting and the progress bar off. The raw loop trains a second copy of the
same model on the same batch size with the same optimizer, schedule, clipping and precision.

The two are interleaved step by step: a callback at the end of each Trainer step runs one raw-loop step,
so a Trainer step is timed from the end of the previous raw step to its own end (data loading, Trainer
bookkeeping, forward, backward, clipping, optimizer, scheduler, logging, callbacks).

    .venv/bin/python -m benchmarks.bench_trainer_overhead [--quick]
"""

import tempfile
import time

import torch
from torch.utils.data import Dataset
from transformers import TrainerCallback, default_data_collator, get_cosine_schedule_with_warmup

from benchmarks.common import Size, build_custom, median, parse_bench_args, print_table, write_results
from hf_custom_lm.arguments import LMTrainingArguments
from hf_custom_lm.training import CustomLMTrainer, build_callbacks


class RandomTokens(Dataset):
    def __init__(self, rows: int, size: Size, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, size.vocab_size, (rows, size.context), generator=generator)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


class RawLoop:
    """The hand-written step: forward with labels, backward, clip, AdamW, schedule."""

    def __init__(self, model, args: LMTrainingArguments, batches: list[torch.Tensor]):
        self.model = model.train()
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay, fused=True
        )
        self.scheduler = get_cosine_schedule_with_warmup(
            self.optimizer, args.get_warmup_steps(args.max_steps), args.max_steps
        )
        self.max_grad_norm = args.max_grad_norm
        self.bf16 = args.bf16
        self.batches = batches
        self.steps = 0

    def step(self):
        batch = self.batches[self.steps % len(self.batches)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1


class Interleave(TrainerCallback):
    """After each Trainer step, time it and run (and time) one raw-loop step."""

    def __init__(self, raw: RawLoop):
        self.raw = raw
        self.trainer_seconds, self.raw_seconds = [], []
        self.mark = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.mark = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.trainer_seconds.append(now - self.mark)
        start = time.perf_counter()
        self.raw.step()
        self.raw_seconds.append(time.perf_counter() - start)
        self.mark = time.perf_counter()


def run(quick: bool = False) -> dict:
    size = Size(batch_size=4, context=128) if quick else Size()
    warmup, measured = (1, 4) if quick else (3, 20)
    steps = warmup + measured
    dataset = RandomTokens(steps * size.batch_size, size)
    with tempfile.TemporaryDirectory() as output_dir:
        args = LMTrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=size.batch_size,
            max_steps=steps,
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
            early_stopping_patience=0,
            report_to="none",
            disable_tqdm=True,
            dataloader_drop_last=True,
            seed=0,
        )
        trainer_model, raw_model = build_custom(size), build_custom(size)
        batches = [dataset.ids[i : i + size.batch_size] for i in range(0, len(dataset), size.batch_size)]
        interleave = Interleave(RawLoop(raw_model, args, batches))
        trainer = CustomLMTrainer(
            model=trainer_model,
            args=args,
            train_dataset=dataset,
            data_collator=default_data_collator,
            callbacks=build_callbacks(args) + [interleave],
        )
        trainer.train()

    trainer_step = median(interleave.trainer_seconds[warmup:])
    raw_step = median(interleave.raw_seconds[warmup:])
    overhead = trainer_step / raw_step - 1
    tokens = size.batch_size * size.context
    rows = [
        {"path": "CustomLMTrainer", "step_s": trainer_step, "tokens_per_s": tokens / trainer_step},
        {"path": "raw loop", "step_s": raw_step, "tokens_per_s": tokens / raw_step},
    ]
    target = f"{'met' if overhead <= 0.10 else 'NOT met'} ({100 * overhead:+.1f}% vs <= 10%)"
    print_table(
        rows,
        ["path", "step_s", "tokens_per_s"],
        f"Trainer vs raw loop, batch {size.batch_size} x context {size.context}, "
        f"{'bf16' if args.bf16 else 'fp32'}, median of {measured} interleaved steps after {warmup} warm-up",
    )
    print(f"  Trainer overhead <= 10% of the raw loop: {target}")
    payload = {
        "size": size.__dict__,
        "bf16": args.bf16,
        "rows": rows,
        "overhead_fraction": overhead,
        "trainer_step_seconds": interleave.trainer_seconds,
        "raw_step_seconds": interleave.raw_seconds,
        "warmup_steps_dropped": warmup,
        "targets": {"Trainer overhead <= 10% of the raw loop": target},
        "quick": quick,
    }
    print("wrote", write_results("trainer_overhead_quick" if quick else "trainer_overhead", payload))
    return payload


if __name__ == "__main__":
    run(parse_bench_args().quick)
