"""The model card of an exported folder: `README.md` (YAML metadata + text) and its loss-curve figure.

The card is rendered with `huggingface_hub.ModelCard.from_template` from the Jinja template
`model_card_template.md` beside this module (package data); `model_card/` at the top of the repository
holds the user-facing description of the card and an example rendered from a real run. The figure is
drawn by `loss_curve.py`.

Inputs are what a training run leaves: the model's config, the Trainer's state (`log_history`, best
checkpoint, early-stopping callback), its final metrics and its `TrainingArguments`. Every section is
written from them; what is not known is left out, never filled with a placeholder.
"""

import dataclasses
import datetime
import math
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .. import __version__
from ..model import CODE_FILES, CustomLMConfig
from ..training.loss_curve import (
    LOSS_CURVE_FILENAME,
    best_step,
    loss_curve_caption,
    plot_loss_curve,
    stopped_early,
)
from .llama import LLAMA_SETTINGS

CARD_TEMPLATE = (Path(__file__).parent / "model_card_template.md").read_text(encoding="utf-8")

# TrainingArguments fields shown in the card, in order, with their labels.
HYPERPARAMETER_LABELS = {
    "learning_rate": "peak learning rate",
    "lr_scheduler_type": "learning-rate schedule",
    "warmup_steps": "warm-up steps",
    "optim": "optimizer",
    "hidden_optimizer": "optimizer of the decoder's weight matrices",
    "embedding_lr_multiplier": "embeddings' learning rate (times the peak)",
    "adam_beta1": "Adam beta1",
    "adam_beta2": "Adam beta2",
    "adam_epsilon": "Adam epsilon",
    "weight_decay": "weight decay",
    "max_grad_norm": "gradient clipping (max norm)",
    "per_device_train_batch_size": "batch size per device",
    "gradient_accumulation_steps": "gradient accumulation steps",
    "num_train_epochs": "epochs (planned)",
    "max_steps": "max steps (planned)",
    "seed": "seed",
}


def as_dict(obj: Any) -> dict | None:
    """`TrainerState` / `TrainingArguments` / dict / None -> a plain dict (or None)."""
    if obj is None or isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict"):  # TrainingArguments: enums become their values
        return obj.to_dict()
    if dataclasses.is_dataclass(obj):  # TrainerState
        return dataclasses.asdict(obj)
    raise TypeError(f"Expected a dict, a dataclass or None, got {type(obj).__name__}.")


def target_modules(config: CustomLMConfig) -> list[str]:
    """The linear layers LoRA can target; `gate_proj` exists only in the gated MLP."""
    mlp = ["gate_proj", "up_proj", "down_proj"] if config.mlp_type == "gated" else ["up_proj", "down_proj"]
    return ["q_proj", "k_proj", "v_proj", "o_proj", *mlp]


def _count(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def architecture_rows(model) -> list[tuple[str, str]]:
    config = model.config
    n_params = model.num_parameters()
    if config.mlp_type == "gated":
        glu = "SwiGLU" if config.hidden_act == "silu" else f"{config.hidden_act} GLU"
        mlp = f"gated ({glu}), width {config.intermediate_size}"
    else:
        mlp = f"two-layer, {config.hidden_act}, width {config.intermediate_size}"
    positions = {
        "rope": f"rotary (RoPE, theta {(config.rope_parameters or {}).get('rope_theta', 'default')})",
        "sinusoidal": "fixed sinusoidal table (Vaswani et al., 2017)",
        "learned": "learned absolute table",
    }[config.position_embedding_type]
    attention = "multi-head" if config.num_key_value_heads == config.num_attention_heads else "grouped-query"
    return [
        ("parameters", f"{n_params:,} ({model.num_parameters(exclude_embeddings=True):,} without embeddings)"),
        ("layers", str(config.num_hidden_layers)),
        ("hidden size", str(config.hidden_size)),
        ("attention heads", f"{config.num_attention_heads} (head dim {config.head_dim})"),
        ("key/value heads", f"{config.num_key_value_heads} ({attention} attention)"),
        ("context length", f"{config.max_position_embeddings} tokens"),
        ("positions", positions),
        ("normalisation", f"{'RMSNorm' if config.norm_type == 'rmsnorm' else 'LayerNorm'}, pre-norm"),
        ("MLP", mlp),
        ("vocabulary", f"{config.vocab_size} tokens"),
        ("tied input/output embeddings", "yes" if config.tie_word_embeddings else "no"),
        ("dropout (attention / residual)", f"{config.attention_dropout} / {config.hidden_dropout}"),
    ]


def hyperparameter_rows(training_args: dict | None, trainer_state: dict | None) -> list[tuple[str, str]]:
    rows = []
    for key, label in HYPERPARAMETER_LABELS.items():
        if training_args and key in training_args:
            value = training_args[key]
            if value is None:  # unset, and a Trainer built without the training script did not resolve it
                continue
            if key == "max_steps" and value <= 0:  # -1: the epochs decide
                continue
            if key == "num_train_epochs" and (training_args.get("max_steps", -1) > 0
                                              or training_args.get("max_train_time")):  # they end the run instead
                continue
            if key == "warmup_steps" and 0 < value < 1:  # a fraction of the run (of its steps, or of its budget)
                label, value = "warm-up", f"{value:.0%} of the " + (
                    "time budget" if training_args.get("max_train_time") else "training steps")
            rows.append((label, str(value)))
    if training_args and ("bf16" in training_args or "fp16" in training_args):
        precision = "bf16" if training_args.get("bf16") else "fp16" if training_args.get("fp16") else "none (fp32)"
        rows.append(("mixed precision", precision))
    if trainer_state:
        history = trainer_state.get("log_history") or []
        logged_rates = [row["learning_rate"] for row in history if "learning_rate" in row]
        if logged_rates and not (training_args and "learning_rate" in training_args):
            rows.append(("peak learning rate (logged)", f"{max(logged_rates):.3g}"))
        if trainer_state.get("train_batch_size"):
            rows.append(("sequences per step per process", str(trainer_state["train_batch_size"])))
        rows.append(("optimizer steps done", str(trainer_state.get("global_step", 0))))
        rows.append(("epochs done", f"{trainer_state.get('epoch') or 0:.2f}"))
        if trainer_state.get("num_input_tokens_seen"):
            rows.append(("tokens seen", f"{trainer_state['num_input_tokens_seen']:,}"))
        early = (trainer_state.get("stateful_callbacks") or {}).get("EarlyStoppingCallback")
        if isinstance(early, dict):
            rows.append(("early-stopping patience (evaluations)", str(early["args"]["early_stopping_patience"])))
    return rows


def procedure_text(training_args: dict | None, trainer_state: dict | None) -> str:
    if not training_args and not trainer_state:
        return "The training run was not recorded with this export."
    parts = ["Trained from scratch with the `transformers` Trainer on next-token prediction (cross-entropy loss)."]
    if trainer_state:
        best = best_step(trainer_state)
        if best is not None and trainer_state.get("best_metric") is not None:
            metric = (training_args or {}).get("metric_for_best_model") or "eval_loss"
            parts.append(f"The best evaluation was at step {best} ({metric} {trainer_state['best_metric']:.4f}).")
            if (training_args or {}).get("load_best_model_at_end"):
                parts.append("These weights are that checkpoint's, restored at the end of training.")
        if stopped_early(trainer_state):
            parts.append(
                f"Early stopping ended training at step {trainer_state['global_step']} of "
                f"{trainer_state['max_steps']} planned, when the evaluation metric stopped improving."
            )
    return " ".join(parts)


def _metric(metrics: dict, name: str) -> float | None:
    for key in (f"eval_{name}", name):
        if metrics.get(key) is not None:
            return float(metrics[key])
    return None


def evaluation_metrics(metrics: dict | None, trainer_state: dict | None) -> tuple[dict[str, float], str]:
    """(loss / perplexity / bits_per_byte of the exported weights, where they come from).

    From the run's final metrics when given; else from the `log_history` evaluation at the best step (or
    the last one). Perplexity is exp(loss) when not recorded; bits per byte only when recorded (it needs
    the byte count of the evaluation text).
    """
    source = "Measured on the held-out evaluation split at the end of training."
    if not metrics and trainer_state:
        evals = [row for row in trainer_state.get("log_history") or [] if "eval_loss" in row]
        best = best_step(trainer_state)
        metrics = next((row for row in evals if row.get("step") == best), evals[-1] if evals else None)
        if metrics:
            source = f"The evaluation logged at step {metrics.get('step')} on the held-out split."
    if not metrics or _metric(metrics, "loss") is None:
        return {}, ""
    result = {"loss": _metric(metrics, "loss")}
    result["perplexity"] = _metric(metrics, "perplexity") or math.exp(result["loss"])
    if _metric(metrics, "bits_per_byte") is not None:
        result["bits_per_byte"] = _metric(metrics, "bits_per_byte")
    return result, source


def _usage(model_id: str, format: str, example_prompt: str) -> tuple[str, str, str]:
    if format == "llama":
        intro = (
            "This folder is a standard `LlamaForCausalLM` checkpoint: it needs no custom code and loads in "
            "`transformers` and in serving stacks that support Llama."
        )
        load = (
            "model = AutoModelForCausalLM.from_pretrained(model_id)\n"
            "tokenizer = AutoTokenizer.from_pretrained(model_id)"
        )
        pipe = f'generator = pipeline("text-generation", model="{model_id}")'
        head = f'from transformers import AutoModelForCausalLM, AutoTokenizer\n\nmodel_id = "{model_id}"\n'
    else:
        intro = (
            f"The model's code ships in this repository ({', '.join(f'`{name}`' for name in CODE_FILES)}), "
            "so it loads with `trust_remote_code=True`. That code runs on your machine with your permissions: "
            "read it, then pin the commit you read with `revision`, so that a later push to the repository "
            "cannot change what runs. `list_repo_commits` gives the newest commit; once reviewed, write its "
            "hash into your code as a string. With `hf_custom_lm` installed, `import hf_custom_lm` registers "
            "the classes and no remote code is needed."
        )
        load = (
            "model = AutoModelForCausalLM.from_pretrained(model_id, revision=revision, trust_remote_code=True)\n"
            # the tokenizer reads the config's auto_map too: without the flag it stops at a prompt
            "tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision, trust_remote_code=True)"
        )
        pipe = (
            f'generator = pipeline("text-generation", model="{model_id}", revision=revision, '
            "trust_remote_code=True)"
        )
        head = (
            "from huggingface_hub import HfApi\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'model_id = "{model_id}"\n'
            "revision = HfApi().list_repo_commits(model_id)[0].commit_id  # the commit whose code you reviewed\n"
        )
    usage = (
        f"{head}{load}\n\n"
        f'inputs = tokenizer("{example_prompt}", return_tensors="pt")\n'
        "output = model.generate(**inputs, max_new_tokens=50, do_sample=True, top_p=0.95)\n"
        "print(tokenizer.decode(output[0], skip_special_tokens=True))"
    )
    pipeline_code = (
        f"from transformers import pipeline\n\n{pipe}\n"
        f'print(generator("{example_prompt}", max_new_tokens=50, do_sample=True)[0]["generated_text"])'
    )
    return intro, usage, pipeline_code


def limitations(config: CustomLMConfig, block_size: int | None = None) -> list[str]:
    items = [
        ("A small base model trained from scratch on one corpus: it continues text in the style of its "
         "training data, states falsehoods fluently, and follows no instructions (no instruction tuning or "
         "preference training)."),
        "It reproduces the biases and errors of its training text; it was not filtered or evaluated for safety.",
        ("Its tokenizer was trained on the same corpus, so text from other languages or domains splits into "
         "many tokens and is modelled poorly."),
    ]
    if config.position_embedding_type == "learned":
        items.append(
            f"Learned positions stop at {config.max_position_embeddings} tokens: longer inputs are refused."
        )
    elif block_size is not None:
        items.append(f"Trained on sequences of {block_size} tokens; quality degrades on longer inputs.")
    return items


def render_model_card(
    model,
    *,
    model_id: str,
    format: str = "custom_lm",
    trainer_state: Any = None,
    metrics: dict | None = None,
    training_args: Any = None,
    dataset_description: str | None = None,
    datasets: list[str] | None = None,
    license: str = "apache-2.0",
    loss_curve: str | None = None,
    example_prompt: str = "Once upon a time",
) -> ModelCard:
    """The card of `model` as exported under `model_id` (a Hub id or a folder name)."""
    trainer_state, training_args = as_dict(trainer_state), as_dict(training_args)
    config = model.config
    evaluation, evaluation_note = evaluation_metrics(metrics, trainer_state)
    dataset_name = ", ".join(datasets) if datasets else "held-out split of the training text"
    eval_results = [
        EvalResult(task_type="text-generation", task_name="Causal language modeling",
                   dataset_type=datasets[0] if datasets else "custom", dataset_name=dataset_name,
                   dataset_split="validation", metric_type=name, metric_name=name.replace("_", " "),
                   metric_value=round(value, 4))
        for name, value in evaluation.items()
    ]
    tags = ["hf_custom_lm", "text-generation", "causal-lm", "llama" if format == "llama" else "custom_code"]
    card_data = ModelCardData(
        model_name=model_id, license=license, library_name="transformers", pipeline_tag="text-generation",
        tags=tags, datasets=datasets or None, eval_results=eval_results or None,
        metrics=list(evaluation) or None,
    )
    usage_intro, usage_code, pipeline_code = _usage(model_id, format, example_prompt)
    llama_like = all(getattr(config, name) == value for name, value in LLAMA_SETTINGS.items())
    summary = (
        f"A {_count(model.num_parameters())}-parameter decoder-only Transformer language model trained from "
        f"scratch with `hf_custom_lm` {__version__}. It is a base model: it continues the text it is given."
    )
    code_note = (
        "With these settings the network is mathematically a Llama and its parameter names are Llama's."
        if llama_like else
        "Its settings (see the table) differ from Llama's, so it runs only with its own modelling code."
    )
    return ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        model_id=model_id,
        format=format,
        summary=summary,
        code_note=code_note,
        architecture=architecture_rows(model),
        training_data=dataset_description or "The training data is not described in this card.",
        procedure=procedure_text(training_args, trainer_state),
        hyperparameters=hyperparameter_rows(training_args, trainer_state),
        loss_curve=loss_curve,
        loss_curve_caption=loss_curve_caption(trainer_state),
        evaluation=[(name.replace("_", " "), f"{value:.4f}") for name, value in evaluation.items()],
        evaluation_note=evaluation_note,
        usage_intro=usage_intro,
        usage_code=usage_code,
        pipeline_code=pipeline_code,
        target_modules=target_modules(config),
        limitations=limitations(config, (training_args or {}).get("block_size")),
        version=__version__,
        year=datetime.date.today().year,
    )


# LOSS_CURVE_FILENAME and plot_loss_curve are re-exported for `export`, which writes the figure.
__all__ = [
    "CARD_TEMPLATE", "LOSS_CURVE_FILENAME", "as_dict", "plot_loss_curve", "render_model_card", "target_modules",
]
