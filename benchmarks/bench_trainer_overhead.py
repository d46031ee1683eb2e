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
from hf_custom_lm.training.arguments import LMTrainingArguments
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
    """After each Trainer step, time it and run (and time) one raw-loop step: wall and CPU seconds."""

    def __init__(self, raw: RawLoop):
        self.raw = raw
        self.trainer_seconds, self.raw_seconds = [], []
        self.trainer_cpu_seconds, self.raw_cpu_seconds = [], []
        self.mark = self.mark_cpu = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.mark, self.mark_cpu = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer_seconds.append(time.perf_counter() - self.mark)
        self.trainer_cpu_seconds.append(time.process_time() - self.mark_cpu)
        start, start_cpu = time.perf_counter(), time.process_time()
        self.raw.step()
        self.raw_seconds.append(time.perf_counter() - start)
        self.raw_cpu_seconds.append(time.process_time() - start_cpu)
        self.mark, self.mark_cpu = time.perf_counter(), time.process_time()


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
    trainer_cpu = median(interleave.trainer_cpu_seconds[warmup:])
    raw_cpu = median(interleave.raw_cpu_seconds[warmup:])
    overhead = trainer_step / raw_step - 1
    tokens = size.batch_size * size.context
    rows = [
        {"path": "CustomLMTrainer", "step_s": trainer_step, "tokens_per_s": tokens / trainer_step,
         "step_cpu_s": trainer_cpu},
        {"path": "raw loop", "step_s": raw_step, "tokens_per_s": tokens / raw_step, "step_cpu_s": raw_cpu},
    ]
    target = f"{'met' if overhead <= 0.10 else 'NOT met'} ({100 * overhead:+.1f}% vs <= 10%)"
    print_table(
        rows,
        ["path", "step_s", "tokens_per_s", "step_cpu_s"],
        f"Trainer vs raw loop, batch {size.batch_size} x context {size.context}, "
        f"{'bf16' if args.bf16 else 'fp32'}, median of {measured} interleaved steps after {warmup} warm-up",
    )
    print(f"  Trainer overhead <= 10% of the raw loop: {target}; in CPU seconds: {100 * (trainer_cpu / raw_cpu - 1):+.1f}%")
    payload = {
        "size": size.__dict__,
        "bf16": args.bf16,
        "rows": rows,
        "overhead_fraction": overhead,
        "overhead_fraction_cpu": trainer_cpu / raw_cpu - 1,
        "trainer_step_seconds": interleave.trainer_seconds,
        "raw_step_seconds": interleave.raw_seconds,
        "trainer_step_cpu_seconds": interleave.trainer_cpu_seconds,
        "raw_step_cpu_seconds": interleave.raw_cpu_seconds,
        "warmup_steps_dropped": warmup,
        "targets": {"Trainer overhead <= 10% of the raw loop": target},
        "quick": quick,
    }
    print("wrote", write_results("trainer_overhead_quick" if quick else "trainer_overhead", payload))
    return payload


if __name__ == "__main__":
    run(parse_bench_args().quick)
