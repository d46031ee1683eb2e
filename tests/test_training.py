"""Training with the Trainer: the loss falls, evaluation reports perplexity and bits per byte, embeddings
and norms skip weight decay, early stopping fires and loads the best model, non-finite losses stop the
run, activation checkpointing and bf16 autocast run. Tiny model, a few steps, text from the bundled corpus.

The helpers at the top are shared by the other training test files.
"""

import gzip
import json
import math
from functools import cache

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, TrainerCallback

from hf_custom_lm.training.data import load_text_dataset
from hf_custom_lm.training.packing import bytes_per_token as count_bytes_per_token
from hf_custom_lm.training.packing import tokenize_and_pack
from hf_custom_lm.training.arguments import DataArguments, LMTrainingArguments, ModelArguments, fast_bf16_available
from hf_custom_lm.training.callbacks import NonFiniteLossError
from hf_custom_lm.training.tokenization import bundled_corpus_files
from hf_custom_lm.training import CustomLMTrainer, evaluate_language_model, train_language_model

BLOCK_SIZE = 32


@cache
def corpus_text() -> str:
    """The bundled validation documents joined: real English for tiny runs."""
    with gzip.open(bundled_corpus_files()["validation"], "rt", encoding="utf-8") as f:
        return "\n\n".join(json.loads(line)["text"] for line in f)


def write_jsonl(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    return str(path)


def write_corpus(tmp_path, train_chars=24_000, validation_chars=4_000, doc_chars=2_000):
    """Train and validation jsonl files of `doc_chars`-character documents cut from the corpus."""
    text = corpus_text()
    cut = lambda start, end: [text[i : i + doc_chars] for i in range(start, end, doc_chars)]  # noqa: E731
    train = write_jsonl(tmp_path / "train.jsonl", cut(0, train_chars))
    validation = write_jsonl(tmp_path / "validation.jsonl", cut(train_chars, train_chars + validation_chars))
    return train, validation


@pytest.fixture(scope="session")
def tokenizer_dir(tokenizer, tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(path)
    return str(path)


def model_arguments(tokenizer_dir, **overrides) -> ModelArguments:
    """The tiny preset (2 layers, 64 wide) with the test tokenizer."""
    return ModelArguments(**{"tokenizer_name": tokenizer_dir, "config_name": "tiny", **overrides})


def data_arguments(tmp_path, **overrides) -> DataArguments:
    train, validation = write_corpus(tmp_path)
    values = dict(train_file=train, validation_file=validation, block_size=BLOCK_SIZE,
                  cache_dir=str(tmp_path / "cache"))
    return DataArguments(**{**values, **overrides})


def training_arguments(tmp_path, **overrides) -> LMTrainingArguments:
    values = dict(
        output_dir=str(tmp_path / "run"), max_steps=8, per_device_train_batch_size=8, per_device_eval_batch_size=16,
        learning_rate=3e-3, warmup_steps=0, eval_steps=4, save_steps=4, logging_steps=1, report_to=[],
        disable_tqdm=True, bf16=False, seed=0, early_stopping_patience=0, dataloader_num_workers=0,
    )
    return LMTrainingArguments(**{**values, **overrides})


def logged(run_dir, key):
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return [entry[key] for entry in state["log_history"] if key in entry]


# ---------------------------------------------------------------------------------------------------------------


def test_loss_decreases_and_evaluation_reports_perplexity_and_bits_per_byte(tmp_path, tokenizer_dir, tokenizer):
    args = training_arguments(tmp_path, max_steps=24, eval_steps=8, save_steps=8, report_to=["tensorboard"])
    data_args = data_arguments(tmp_path)
    metrics = train_language_model(model_arguments(tokenizer_dir), data_args, args)
    run = tmp_path / "run"

    losses = logged(run, "loss")
    eval_losses = logged(run, "eval_loss")
    assert len(losses) == 24 and len(eval_losses) == 4  # 3 periodic evaluations + the final one
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert eval_losses[2] < eval_losses[0]

    # Perplexity and bits per byte are computed from eval_loss and the validation text's bytes per token.
    raw = load_text_dataset(train_file=data_args.train_file, validation_file=data_args.validation_file)
    blocks = tokenize_and_pack(raw, tokenizer, BLOCK_SIZE)
    bytes_per_token = count_bytes_per_token(blocks["validation"])
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))
    assert metrics["eval_bits_per_byte"] == pytest.approx(metrics["eval_loss"] / math.log(2) / bytes_per_token)
    # ... in every evaluation log, so they reach TensorBoard and the log history, not only the return value
    assert len(logged(run, "eval_bits_per_byte")) == len(logged(run, "eval_perplexity")) == 4

    for name in ("all_results.json", "eval_results.json", "train_results.json"):
        assert "eval_loss" in json.loads((run / name).read_text()) or name == "train_results.json"
    assert json.loads((run / "eval_results.json").read_text())["eval_bits_per_byte"] == metrics["eval_bits_per_byte"]
    assert list((run / "runs").rglob("events.out.tfevents.*")), "TensorBoard wrote no event file"

    # The final folder loads through the Auto classes (auto_map + code) with tied embeddings intact, and
    # `evaluate_language_model` scores it exactly as the Trainer did.
    config = json.loads((run / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_custom_lm.CustomLMForCausalLM"
    assert (run / "modeling_custom_lm.py").is_file() and (run / "configuration_custom_lm.py").is_file()
    assert json.loads((run / "training_args.json").read_text())["learning_rate"] == args.learning_rate
    model = AutoModelForCausalLM.from_pretrained(run)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    scored = evaluate_language_model(run, data_args.validation_file, block_size=BLOCK_SIZE)
    assert scored["loss"] == pytest.approx(metrics["eval_loss"], abs=1e-4)
    assert scored["bits_per_byte"] == pytest.approx(metrics["eval_bits_per_byte"], abs=1e-4)


def test_weight_decay_skips_embeddings_norms_and_biases(tmp_path, tokenizer):
    from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM

    config = CustomLMConfig.from_preset(
        "tiny", vocab_size=len(tokenizer), position_embedding_type="learned", norm_type="layernorm",
        attention_bias=True, mlp_bias=True, tie_word_embeddings=False,
    )
    model = CustomLMForCausalLM(config)
    args = training_arguments(tmp_path, eval_strategy="no", load_best_model_at_end=False, weight_decay=0.1)
    trainer = CustomLMTrainer(model=model, args=args)
    decay = set(trainer.get_decay_parameter_names(model))
    names = {name for name, _ in model.named_parameters()}
    assert "model.embed_tokens.weight" not in decay and "model.embed_positions.weight" not in decay
    assert not {n for n in decay if "norm" in n or n.endswith(".bias")}
    assert decay == {n for n in names if n.endswith("proj.weight")} | {"lm_head.weight"}

    optimizer = trainer.create_optimizer()
    by_decay = {group["weight_decay"]: {id(p) for p in group["params"]} for group in optimizer.param_groups}
    params = dict(model.named_parameters())
    assert id(params["model.embed_tokens.weight"]) in by_decay[0.0]
    assert id(params["model.layers.0.self_attn.q_proj.weight"]) in by_decay[0.1]


class PerturbAfterFirstSave(TrainerCallback):
    """Adds noise to the weights once the first checkpoint is written: later evaluations get worse."""

    def __init__(self):
        self.done = False

    def on_save(self, args, state, control, model=None, **kwargs):
        if not self.done:
            torch.manual_seed(1)
            with torch.no_grad():
                for param in model.parameters():
                    param.add_(torch.randn_like(param) * 0.5)
            self.done = True


def test_early_stopping_fires_within_patience_and_loads_the_best_checkpoint(tmp_path, tokenizer_dir):
    # Learning rate 0: the loss cannot improve after the first evaluation (and gets worse once perturbed).
    args = training_arguments(
        tmp_path, learning_rate=0.0, max_steps=40, eval_steps=2, save_steps=2, early_stopping_patience=2,
        save_total_limit=1,
    )
    metrics = train_language_model(
        model_arguments(tokenizer_dir), data_arguments(tmp_path), args, [PerturbAfterFirstSave()]
    )
    run = tmp_path / "run"
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["global_step"] == 6  # evaluations at 2 (best), 4 and 6 (two without improvement): stop
    assert state["best_model_checkpoint"].endswith("checkpoint-2")
    # save_total_limit=1 rotated checkpoint-4 (and, at the end, checkpoint-6) away but never the best one.
    assert [p.name for p in run.glob("checkpoint-*")] == ["checkpoint-2"]

    evals = [entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry]
    assert len(evals) == 4 and evals[1] > evals[0] + 1.0  # the perturbation made steps 4 and 6 worse
    assert evals[-1] == pytest.approx(evals[0], abs=1e-5) == metrics["eval_loss"]  # the final model is the best
    final = load_file(run / "model.safetensors")
    best = load_file(run / "checkpoint-2" / "model.safetensors")
    for name in final:
        torch.testing.assert_close(final[name], best[name], rtol=0, atol=0)


def test_early_stopping_threshold_counts_small_improvements_as_none(tmp_path, tokenizer_dir):
    # The loss falls at every evaluation, but by less than the threshold: patience runs out all the same.
    args = training_arguments(tmp_path, max_steps=40, eval_steps=2, save_steps=2, early_stopping_patience=2,
                              early_stopping_threshold=100.0)
    train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args)
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    evals = [entry["eval_loss"] for entry in state["log_history"] if "eval_loss" in entry]
    assert state["global_step"] == 6 and evals[2] < evals[1] < evals[0]


def test_non_finite_loss_stops_training_with_a_clear_error(tmp_path, tokenizer_dir):
    class PoisonWeights(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            with torch.no_grad():
                model.get_input_embeddings().weight.fill_(float("nan"))

    args = training_arguments(tmp_path, save_steps=1, eval_steps=1)
    with pytest.raises(NonFiniteLossError, match=r"Training loss is nan at step 1"):
        train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args, [PoisonWeights()])
    assert not list((tmp_path / "run").glob("checkpoint-*")), "a checkpoint of the diverged weights was saved"


def test_activation_checkpointing_and_bf16_autocast_train(tmp_path, tokenizer_dir):
    seen = {"dtypes": set(), "checkpointing": []}

    class Spy(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            model.model.layers[0].mlp.up_proj.register_forward_hook(
                lambda module, inputs, output: seen["dtypes"].add(output.dtype)
            )

        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen["checkpointing"].append(model.is_activation_checkpointing)

    args = training_arguments(
        tmp_path, max_steps=3, eval_steps=3, save_steps=3, bf16=True, activation_checkpointing=True
    )
    metrics = train_language_model(model_arguments(tokenizer_dir), data_arguments(tmp_path), args, [Spy()])
    assert math.isfinite(metrics["eval_loss"]) and math.isfinite(metrics["train_loss"])
    assert seen["checkpointing"] == [True] * 3
    assert torch.bfloat16 in seen["dtypes"]


def test_document_masking_by_default_gives_the_model_positions_that_restart_in_training_and_evaluation(
    tmp_path, tokenizer_dir
):
    seen = []

    class Spy(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            model.model.register_forward_pre_hook(
                lambda module, args, kwargs: seen.append((module.training, kwargs.get("position_ids"))),
                with_kwargs=True,
            )

    args = training_arguments(tmp_path, max_steps=2, eval_steps=2, save_steps=2)
    (tmp_path / "short").mkdir()
    train, validation = write_corpus(tmp_path / "short", doc_chars=100)  # tens of tokens a document, 32 a block
    data_args = data_arguments(tmp_path, train_file=train, validation_file=validation)  # the default
    assert data_args.document_masking
    metrics = train_language_model(model_arguments(tokenizer_dir), data_args, args, [Spy()])
    assert math.isfinite(metrics["eval_loss"])
    for training in (True, False):
        positions = [p for mode, p in seen if mode == training]
        assert positions and all(p is not None for p in positions), f"training={training}: no position_ids"
        restarts = torch.cat([(p[:, 1:] != p[:, :-1] + 1) for p in positions])
        assert restarts.any(), f"training={training}: no document starts inside a block"
    # `evaluate_language_model` scores the same way by default, and otherwise when told not to
    run = tmp_path / "run"
    scored = evaluate_language_model(run, validation, block_size=BLOCK_SIZE)
    assert scored["loss"] == pytest.approx(metrics["eval_loss"], abs=1e-4)
    across = evaluate_language_model(run, validation, block_size=BLOCK_SIZE, document_masking=False)
    assert across["loss"] != pytest.approx(metrics["eval_loss"], abs=1e-4)


def test_bf16_defaults_to_what_the_hardware_runs_natively(tmp_path):
    args = LMTrainingArguments(output_dir=str(tmp_path), report_to=[])
    assert args.bf16 is fast_bf16_available()
    assert LMTrainingArguments(output_dir=str(tmp_path), report_to=[], bf16=False).bf16 is False
