"""Calls behave as they do on transformers' Llama: the deprecated `past_key_values=` name, `output_attentions`
under sdpa and eager, the forward signatures generic code inspects, and training-mode logits (`fused_loss`).
Each check runs on the default (Llama) switches against `LlamaForCausalLM` and its heads, and on the `classic`
switches where they apply."""

import inspect
import logging
import re
import warnings
from pathlib import Path

import pytest
import torch
import transformers
from transformers import DynamicCache

from hf_custom_lm import CustomLMConfig, CustomLMForCausalLM
from hf_custom_lm.hub.llama import to_llama, to_llama_config
from hf_custom_lm.model import modeling_custom_lm

from .conftest import tiny_config

# Every model class the modeling file exports, and the Llama class each mirrors.
MODEL_CLASSES = [name for name in modeling_custom_lm.__all__ if name != "CustomLMPreTrainedModel"]


def classic_tiny_config(**overrides) -> CustomLMConfig:
    """The `classic` switches (sinusoidal positions, LayerNorm, GELU MLP, dropout) at the tiny sizes of `tiny_config`."""
    sizes = dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, max_position_embeddings=128)
    return CustomLMConfig.from_preset("classic", **{**sizes, **overrides})


CONFIGS = {"default": tiny_config, "classic": classic_tiny_config}


def future_warnings(call) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]


@pytest.mark.parametrize("config_name", CONFIGS)
@pytest.mark.parametrize("class_name", MODEL_CLASSES)
def test_past_key_values_is_taken_as_cache_with_llamas_deprecation_warning(class_name, config_name):
    torch.manual_seed(0)
    config = CONFIGS[config_name]()
    model = getattr(modeling_custom_lm, class_name)(config).eval()
    llama_class = getattr(transformers, class_name.replace("CustomLM", "Llama"))
    llama = llama_class(to_llama_config(tiny_config())).eval()
    ids = torch.randint(2, 512, (1, 5))
    with torch.no_grad():
        theirs = future_warnings(lambda: llama(ids, past_key_values=None))
        ours = future_warnings(lambda: model(ids, past_key_values=None))
    assert theirs and ours == [message.replace("Llama", "CustomLM") for message in theirs]

    with torch.no_grad():  # the value is used as the cache: a continuation equals one longer call
        cache = DynamicCache(config=config)
        model(ids[:, :3], cache=cache)
        continued = model(ids[:, 3:], past_key_values=cache)
        assert cache.get_seq_length() == 5
        if class_name == "CustomLMModel":
            full = model(ids).last_hidden_state
            torch.testing.assert_close(continued.last_hidden_state, full[:, 3:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("class_name", MODEL_CLASSES)
def test_forward_signatures_are_llamas(class_name):
    """Generic code (generate, pipelines, the Trainer) inspects `forward`'s parameters: the same ones run the same
    paths. `output_attentions`, `output_hidden_states` and `return_dict` are keyword arguments, as in Llama."""
    ours = getattr(modeling_custom_lm, class_name)
    theirs = getattr(transformers, class_name.replace("CustomLM", "Llama"))
    assert list(inspect.signature(ours.forward).parameters) == list(inspect.signature(theirs.forward).parameters)


def run_with_attentions(model, ids, caplog, **kwargs):
    caplog.clear()
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        out = model(ids, output_attentions=True, output_hidden_states=True, **kwargs)
    return out, [r.getMessage() for r in caplog.records if "output_attentions" in r.getMessage()]


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_output_attentions_does_what_llama_does(implementation, caplog):
    """Under sdpa Llama warns (transformers' sdpa function does) and returns no attentions; under eager it returns
    each layer's weights. Ours returns the same attentions, hidden states, logits and warnings."""
    torch.manual_seed(0)
    model = CustomLMForCausalLM(tiny_config()).eval()
    llama = to_llama(model)
    model.set_attn_implementation(implementation)
    llama.set_attn_implementation(implementation)
    ids = torch.randint(2, 512, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    transformers.logging.get_logger("transformers.integrations.sdpa_attention").warning_once.cache_clear()
    theirs, their_warnings = run_with_attentions(llama, ids, caplog, attention_mask=mask)
    transformers.logging.get_logger("transformers.integrations.sdpa_attention").warning_once.cache_clear()
    ours, our_warnings = run_with_attentions(model, ids, caplog, attention_mask=mask)

    assert our_warnings == their_warnings and bool(their_warnings) == (implementation == "sdpa")
    assert len(ours.attentions) == len(theirs.attentions) == (2 if implementation == "eager" else 0)
    for a, b in zip(ours.attentions, theirs.attentions):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert len(ours.hidden_states) == len(theirs.hidden_states)
    for a, b in zip(ours.hidden_states, theirs.hidden_states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    real = mask.bool()
    torch.testing.assert_close(ours.logits[real], theirs.logits[real], atol=1e-5, rtol=0)


def test_output_attentions_with_the_classic_switches():
    """Same contract without a Llama to compare: sdpa gives no attentions and the same logits as eager, which
    gives one (B, H, T, T) causal softmax per layer."""
    torch.manual_seed(0)
    model = CustomLMForCausalLM(classic_tiny_config()).eval()
    ids = torch.randint(2, 512, (2, 6))
    with torch.no_grad():
        sdpa = model(ids, output_attentions=True)
        model.set_attn_implementation("eager")
        eager = model(ids, output_attentions=True)
    assert sdpa.attentions == ()
    torch.testing.assert_close(sdpa.logits, eager.logits, atol=1e-5, rtol=1e-5)
    assert [a.shape for a in eager.attentions] == [(2, 4, 6, 6)] * 2
    torch.testing.assert_close(eager.attentions[0].sum(-1), torch.ones(2, 4, 6))
    assert eager.attentions[0].triu(1).abs().max() == 0


def test_return_dict_false_gives_llamas_tuple():
    torch.manual_seed(0)
    model = CustomLMForCausalLM(tiny_config()).eval()
    llama = to_llama(model)
    ids = torch.randint(2, 512, (1, 4))
    with torch.no_grad():
        ours, theirs = model(ids, labels=ids, return_dict=False), llama(ids, labels=ids, return_dict=False)
    assert isinstance(ours, tuple) and len(ours) == len(theirs)
    torch.testing.assert_close(ours[:2], theirs[:2], atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ fused_loss


def training_step(model, ids, labels, seed=0):
    torch.manual_seed(seed)  # the same dropout masks in each call
    out = model(ids, labels=labels)
    out.loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    return out, grads


@pytest.mark.parametrize("fused_loss", [True, False])
def test_fused_loss_switch_in_training_mode_against_llama(fused_loss):
    """`fused_loss=False` gives Llama's training-mode logits; both settings give Llama's loss and gradients."""
    torch.manual_seed(0)
    model = CustomLMForCausalLM(tiny_config(fused_loss=fused_loss)).train()
    llama = to_llama(model).train()
    ids = torch.randint(2, 512, (2, 9))
    labels = ids.clone()
    labels[0, :3] = -100
    ours, our_grads = training_step(model, ids, labels)
    theirs, their_grads = training_step(llama, ids, labels)
    if fused_loss:
        assert ours.logits is None
    else:
        torch.testing.assert_close(ours.logits, theirs.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-6, rtol=1e-6)
    for name, grad in our_grads.items():
        torch.testing.assert_close(grad, their_grads[name], atol=1e-6, rtol=1e-4, msg=name)


def test_fused_loss_switch_with_the_classic_switches():
    """With dropout on, both settings give the same loss and gradients for the same dropout masks; off, the logits
    are the ones the loss was computed from."""
    torch.manual_seed(0)
    model = CustomLMForCausalLM(classic_tiny_config()).train()
    ids = torch.randint(2, 512, (2, 9))
    fused, fused_grads = training_step(model, ids, ids)
    model.config.fused_loss = False
    plain, plain_grads = training_step(model, ids, ids)
    assert fused.logits is None and plain.logits.shape == (2, 9, 512)
    torch.testing.assert_close(fused.loss, plain.loss, atol=1e-6, rtol=1e-6)
    expected = torch.nn.functional.cross_entropy(plain.logits[:, :-1].reshape(-1, 512), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(plain.loss, expected)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_readme_documents_every_model_switch():
    """The README's switches table names each field CustomLMConfig adds to Llama's, `fused_loss` included."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("| switch | values | default |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)`", table, flags=re.MULTILINE))
    for switch in ("position_embedding_type", "norm_type", "mlp_type", "fused_loss"):
        assert switch in documented, switch
