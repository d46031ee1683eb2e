"""`make demo`: train a language model from scratch on the bundled corpus with the bundled tokenizer, sized
for and trained within the time budget of configs/demo.yaml (`max_train_time`), report validation loss, perplexity and bits
per byte, export a Hub-ready folder to outputs/demo/model, load it with `pipeline("text-generation")`
and print a few samples.

    python scripts/demo.py                      # the whole demo
    python scripts/demo.py --max_train_time 1m  # any `hf-custom-lm train` flag overrides the config

The training run (checkpoints, TensorBoard logs in runs/, metrics JSON) is in outputs/demo/run; it is
started afresh each time.
"""

import os
import shutil
import sys
import time
from pathlib import Path

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. With the default (spinning),
# two threads on two cores shared with any other busy process wait on each other at every parallel region
# (measured in benchmarks/RESULTS.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo.yaml"
EXPORT_DIR = ROOT / "outputs" / "demo" / "model"
CORPUS_DESCRIPTION = (
    "The corpus bundled with hf_custom_lm: public-domain English and Spanish books and reference texts, "
    "and the Python 3.11 documentation (PSF License)."
)
PROMPTS = ["It is a truth universally acknowledged", "In the beginning", "The programmer"]


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    import hf_custom_lm  # noqa: F401  (registers the Auto classes)
    from transformers import pipeline, set_seed

    from hf_custom_lm.cli.common import configure_logging
    from hf_custom_lm.cli.train import parse_train_args
    from hf_custom_lm.hub import export_run
    from hf_custom_lm.training import train_language_model

    model_args, data_args, training_args = parse_train_args(["--config", str(CONFIG), *argv])
    run_dir = Path(training_args.output_dir)
    if not run_dir.is_absolute():
        run_dir = ROOT / run_dir
        training_args.output_dir = str(run_dir)
    if run_dir.exists() and not training_args.resume:
        shutil.rmtree(run_dir)
    configure_logging()
    budget = f"a budget of {training_args.max_train_time}" if training_args.max_train_time else "no time budget"
    precision = ("the faster of fp32 and bf16, timed" if getattr(training_args, "bf16_from_probe", False)
                 else "bf16 autocast" if training_args.bf16 else "fp32")
    print(f"Training on the bundled corpus with {budget} (precision: {precision}) ...")
    metrics = train_language_model(model_args, data_args, training_args)
    trained = time.perf_counter()

    export_run(run_dir, EXPORT_DIR, overwrite=True, dataset_description=CORPUS_DESCRIPTION)
    generator = pipeline("text-generation", model=str(EXPORT_DIR))
    set_seed(0)
    samples = generator(PROMPTS, max_new_tokens=60, do_sample=True, temperature=0.8, top_k=50, top_p=0.95,
                        repetition_penalty=1.1)

    print("\n" + "=" * 72)
    print(f"{metrics['train_steps']} steps, {metrics['train_tokens']:,} tokens, stopped by {metrics['train_stop_reason']}; "
          f"data + training {trained - started:.0f} s ({budget}), total {time.perf_counter() - started:.0f} s")
    print(f"validation loss      {metrics['eval_loss']:.4f}")
    print(f"validation perplexity {metrics['eval_perplexity']:.2f}")
    print(f"validation bits/byte {metrics['eval_bits_per_byte']:.4f}")
    print(f"precision            {'bf16 autocast' if training_args.bf16 else 'fp32'}")
    print(f"Hub-ready folder     {EXPORT_DIR}")
    print("=" * 72)
    for sample in samples:
        print(f"\n>>> {sample[0]['generated_text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
