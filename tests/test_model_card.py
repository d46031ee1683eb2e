"""The model card written by `export`: metadata that parses back, every section filled from a real run."""

import ast
import dataclasses
import math
import re

import matplotlib.image
import pytest
from huggingface_hub import ModelCard
from torch import nn

from hf_custom_lm.hub import export, export_run
from hf_custom_lm.training.loss_curve import loss_curve_figure
from hf_custom_lm.hub.model_card import target_modules
from hf_custom_lm.model import CODE_FILES

from .builders import tiny_model, train_tiny_run

SECTIONS = ["## Architecture", "## Training data", "## Training procedure", "## Evaluation", "## How to use",
            "## Fine-tuning with PEFT", "## Limitations", "## Citation"]
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{%|%\}|TODO|TBD|More Information Needed|\bXXX\b|lorem ipsum", re.IGNORECASE)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tokenizer):
    run_dir = tmp_path_factory.mktemp("run")
    trainer = train_tiny_run(run_dir, tokenizer)
    state = trainer.state
    assert 0 < state.global_step < state.max_steps, "the run is meant to stop early"
    return run_dir, trainer


def eval_results(card) -> dict:
    return {result.metric_type: result.metric_value for result in card.data.eval_results}


def test_card_from_a_trainer_run(run, tmp_path, tokenizer):
    run_dir, trainer = run
    state, metrics = trainer.state, trainer.evaluate()
    assert metrics["eval_loss"] == pytest.approx(state.best_metric)  # the best checkpoint was restored
    folder = export(trainer.model, tokenizer, tmp_path / "export", trainer_state=state, metrics=metrics,
                    training_args=trainer.args, dataset_description="Four sentences, repeated.",
                    repo_id="someone/tiny-lm")
    text = (folder / "README.md").read_text()
    card = ModelCard.load(folder / "README.md")

    assert not PLACEHOLDER.search(text), PLACEHOLDER.search(text)
    assert [section for section in SECTIONS if section in text] == SECTIONS
    data = card.data
    assert (data.license, data.library_name, data.pipeline_tag) == ("apache-2.0", "transformers", "text-generation")
    assert {"hf_custom_lm", "custom_code"} <= set(data.tags) and data.model_name == "someone/tiny-lm"
    assert eval_results(card) == {"loss": round(metrics["eval_loss"], 4),
                                  "perplexity": round(math.exp(metrics["eval_loss"]), 4)}

    config = trainer.model.config
    assert f"| parameters | {trainer.model.num_parameters():,} (" in text
    assert f"| layers | {config.num_hidden_layers} |" in text
    assert f"| key/value heads | {config.num_key_value_heads} (" in text
    assert f"| context length | {config.max_position_embeddings} tokens |" in text
    assert f"| peak learning rate | {trainer.args.learning_rate} |" in text
    assert "| early-stopping patience (evaluations) | 1 |" in text
    assert f"| optimizer steps done | {state.global_step} |" in text
    assert f"The best evaluation was at step {state.best_global_step} (eval_loss {state.best_metric:.4f})" in text
    assert "restored at the end of training" in text
    assert f"Early stopping ended training at step {state.global_step} of {state.max_steps} planned" in text
    assert "Four sentences, repeated." in text
    assert 'model_id = "someone/tiny-lm"' in text and "trust_remote_code=True" in text and "revision=revision" in text
    assert 'pipeline("text-generation"' in text
    assert "['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']" in text
    snippets = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(snippets) == 3  # Auto classes, pipeline, PEFT: each valid Python
    for snippet in snippets:
        ast.parse(snippet)
    assert "@inproceedings{vaswani2017attention" in text and "@software{hf_custom_lm" in text
    assert "mathematically a Llama" in text

    assert "![Training and evaluation loss against optimizer step](loss_curve.png)" in text
    assert matplotlib.image.imread(folder / "loss_curve.png").shape == (480, 840, 4)  # 7 x 4 in at 120 dpi


def test_card_from_a_run_folder(run, tmp_path):
    run_dir, trainer = run
    folder = export_run(run_dir, tmp_path / "export")
    card = ModelCard.load(folder / "README.md")
    final_eval = [row for row in trainer.state.log_history if "eval_loss" in row][-1]
    assert eval_results(card)["loss"] == round(final_eval["eval_loss"], 4)  # from all_results.json
    text = card.text
    assert not PLACEHOLDER.search(text)
    assert f"| peak learning rate | {trainer.args.learning_rate} |" in text  # from training_args.json
    assert f"| max steps (planned) | {trainer.args.max_steps} |" in text
    assert (folder / "loss_curve.png").is_file()
    assert card.data.model_name == "export"  # no repo id given: the folder's name


def test_card_names_the_hidden_optimizer_and_the_embeddings_rate(run, tmp_path, tokenizer):
    _, trainer = run
    args = {**trainer.args.to_dict(), "hidden_optimizer": "muon", "embedding_lr_multiplier": 3.0}
    text = (export(trainer.model, tokenizer, tmp_path / "export", training_args=args) / "README.md").read_text()
    assert "| optimizer of the decoder's weight matrices | muon |" in text
    assert "| embeddings' learning rate (times the peak) | 3.0 |" in text
    unset = {**trainer.args.to_dict(), "hidden_optimizer": None}  # a Trainer built outside the training script
    text = (export(trainer.model, tokenizer, tmp_path / "unset", training_args=unset) / "README.md").read_text()
    assert "weight matrices" not in text


def test_card_without_training_args_shows_the_logged_learning_rate(run, tmp_path, tokenizer):
    _, trainer = run
    folder = export(trainer.model, tokenizer, tmp_path / "export", trainer_state=trainer.state)
    peak = max(row["learning_rate"] for row in trainer.state.log_history if "learning_rate" in row)
    text = (folder / "README.md").read_text()
    assert f"| peak learning rate (logged) | {peak:.3g} |" in text and "| optimizer |" not in text


def test_loss_curve_marks_the_best_checkpoint_and_the_early_stop(run):
    _, trainer = run
    state = dataclasses.asdict(trainer.state)
    figure = loss_curve_figure(state)
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    best = state["best_global_step"]
    best_eval = next(row["eval_loss"] for row in state["log_history"] if row.get("step") == best and "eval_loss" in row)
    star = lines[f"best checkpoint (step {best}, eval loss {best_eval:.3f})"]
    assert list(star.get_xdata()) == [best] and list(star.get_ydata()) == [best_eval]
    assert list(lines[f"early stop (step {state['global_step']})"].get_xdata()) == [state["global_step"]] * 2
    logged = [row["step"] for row in state["log_history"] if "loss" in row]
    assert list(lines["train loss"].get_xdata()) == logged
    assert loss_curve_figure({"log_history": [{"train_runtime": 1.0, "step": 3}]}) is None


def test_card_follows_the_architecture_switches(tmp_path, tokenizer):
    classic = tiny_model(tokenizer, position_embedding_type="learned", norm_type="layernorm", mlp_type="plain",
                         hidden_act="gelu")
    text = (export(classic, tokenizer, tmp_path / "classic") / "README.md").read_text()
    assert not PLACEHOLDER.search(text)
    assert "['q_proj', 'k_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj']" in text  # no gate_proj
    assert "| positions | learned absolute table |" in text and "| normalisation | LayerNorm, pre-norm |" in text
    assert "| MLP | two-layer, gelu, width" in text and "runs only with its own modelling code" in text
    assert f"Learned positions stop at {classic.config.max_position_embeddings} tokens" in text
    for model in (classic, tiny_model(tokenizer)):  # the card's LoRA targets are exactly the model's projections
        linear = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)}
        assert linear - {"lm_head"} == set(target_modules(model.config))

    llama_folder = export(tiny_model(tokenizer), tokenizer, tmp_path / "llama", format="llama")
    llama_text = (llama_folder / "README.md").read_text()
    assert "trust_remote_code" not in llama_text and "standard `LlamaForCausalLM`" in llama_text
    assert "llama" in ModelCard.load(tmp_path / "llama" / "README.md").data.tags


def test_card_reports_bits_per_byte_when_recorded(tmp_path, tokenizer):
    metrics = {"eval_loss": 2.5, "eval_perplexity": math.exp(2.5), "eval_bits_per_byte": 1.2345}
    folder = export(tiny_model(tokenizer), tokenizer, tmp_path / "export", metrics=metrics)
    card = ModelCard.load(folder / "README.md")
    assert eval_results(card) == {"loss": 2.5, "perplexity": round(math.exp(2.5), 4), "bits_per_byte": 1.2345}
    assert "| bits per byte | 1.2345 |" in card.text


def loading_calls(card_text: str) -> dict[str, dict[str, str]]:
    """Every `X.from_pretrained(...)` and `pipeline(...)` call of the card's code: {call: {keyword: source}}."""
    calls = {}
    for snippet in re.findall(r"```python\n(.*?)```", card_text, flags=re.DOTALL):
        for node in ast.walk(ast.parse(snippet)):
            if isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name)):
                name = ast.unparse(node.func)
                if name.endswith("from_pretrained") or name == "pipeline":
                    calls[name] = {kw.arg: ast.unparse(kw.value) for kw in node.keywords}
    return calls


def test_card_code_passes_trust_remote_code_to_every_loader(tmp_path, tokenizer):
    # AutoTokenizer reads the config's auto_map too: without the flag it stops at an interactive prompt
    model = tiny_model(tokenizer)
    text = (export(model, tokenizer, tmp_path / "custom", repo_id="someone/tiny-lm") / "README.md").read_text()
    assert all(f"`{name}`" in text and (tmp_path / "custom" / name).is_file() for name in CODE_FILES)
    calls = loading_calls(text)
    assert set(calls) == {"AutoModelForCausalLM.from_pretrained", "AutoTokenizer.from_pretrained", "pipeline"}
    for name, keywords in calls.items():
        assert keywords.get("trust_remote_code") == "True", name
        assert keywords.get("revision") == "revision", name

    llama_text = (export(model, tokenizer, tmp_path / "llama", format="llama") / "README.md").read_text()
    llama_calls = loading_calls(llama_text)
    assert set(llama_calls) == set(calls)
    assert all("trust_remote_code" not in keywords for keywords in llama_calls.values())


def test_card_states_the_training_sequence_length_and_the_warm_up_fraction(run, tmp_path, tokenizer):
    _, trainer = run
    args = {"learning_rate": 1e-3, "warmup_steps": 0.05, "max_train_time": "3m", "num_train_epochs": 10**9,
            "block_size": 64}
    text = (export(trainer.model, tokenizer, tmp_path / "export", training_args=args) / "README.md").read_text()
    assert "Trained on sequences of 64 tokens" in text and "at most 256 tokens" not in text
    assert "| warm-up | 5% of the time budget |" in text and "| warm-up steps |" not in text
    assert "1000000000" not in text  # the epochs never ran out: the budget ended the run
