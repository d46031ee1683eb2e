"""`torch.export` of the model gives outputs whose structure and values are the eager model's: a plain export
(the forward's own cache), the dynamic cache (prefill and a decoding step) and transformers' executorch wrapper
with its static cache (prefill and token-by-token decoding). The structure is also Llama's."""

import copy

import pytest
import torch
from torch.utils._pytree import tree_flatten, tree_structure
from transformers import DynamicCache
from transformers.integrations.executorch import (
    TorchExportableModuleForDecoderOnlyLM,
    export_with_dynamic_cache,
    register_dynamic_cache_export_support,
)

from hf_custom_lm import CustomLMForCausalLM
from hf_custom_lm.hub.llama import to_llama

from .conftest import tiny_config
from .test_contract_outputs import classic_tiny_config

CONFIGS = {"default": tiny_config, "classic": classic_tiny_config}


@pytest.fixture(scope="module", autouse=True)
def dynamic_cache_pytree():
    register_dynamic_cache_export_support()  # transformers' flattening of DynamicCache for export


def model_for(config_name):
    torch.manual_seed(0)
    return CustomLMForCausalLM(CONFIGS[config_name]()).eval()


def assert_same_outputs(exported, eager):
    assert tree_structure(exported) == tree_structure(eager)
    for a, b in zip(tree_flatten(exported)[0], tree_flatten(eager)[0]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", CONFIGS)
def test_plain_export_has_the_eager_structure_and_values(config_name):
    model = model_for(config_name)
    ids = torch.randint(2, 512, (2, 7))
    with torch.no_grad():
        program = torch.export.export(model, (ids,), strict=False)
        eager = model(ids)
        assert_same_outputs(program.module()(ids), eager)
    if config_name == "default":
        with torch.no_grad():
            assert tree_structure(to_llama(model)(ids)) == tree_structure(eager)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", CONFIGS)
def test_dynamic_cache_prefill_and_decode_export(config_name):
    model = model_for(config_name)
    ids = torch.randint(2, 512, (2, 6))
    mask = torch.ones_like(ids)
    prefill = export_with_dynamic_cache(model, ids[:, :5], mask[:, :5])
    with torch.no_grad():
        inputs = dict(input_ids=ids[:, :5], attention_mask=mask[:, :5], use_cache=True)
        exported = prefill.module()(**inputs, cache=DynamicCache(config=model.config))
        eager = model(**inputs, cache=DynamicCache(config=model.config))
    assert_same_outputs(exported, eager)

    step = dict(input_ids=ids[:, 5:], attention_mask=mask, use_cache=True)
    with torch.no_grad():
        decode = torch.export.export(model, (), {**step, "cache": copy.deepcopy(eager.cache)}, strict=False)
        exported = decode.module()(**step, cache=copy.deepcopy(eager.cache))
        eager_step = model(**step, cache=copy.deepcopy(eager.cache))
        assert_same_outputs(exported, eager_step)
        torch.testing.assert_close(eager_step.logits[:, -1], model(ids).logits[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("config_name", CONFIGS)
def test_executorch_static_cache_prefill_and_decode(config_name):
    model = model_for(config_name)
    model.generation_config.cache_implementation = "static"
    ids = torch.randint(2, 512, (1, 6))
    with torch.no_grad():
        full = model(ids).logits  # (1, 6, V)

    prefill = TorchExportableModuleForDecoderOnlyLM(model, batch_size=1, max_cache_len=16)
    program = prefill.export(input_ids=ids[:, :4], cache_position=torch.arange(4))
    with torch.no_grad():
        logits = program.module()(input_ids=ids[:, :4], cache_position=torch.arange(4))
    torch.testing.assert_close(logits, full[:, :4], atol=1e-5, rtol=1e-5)

    decode = TorchExportableModuleForDecoderOnlyLM(model, batch_size=1, max_cache_len=16)
    program = decode.export(input_ids=ids[:, :1], cache_position=torch.tensor([0])).module()
    with torch.no_grad():
        for position in range(ids.shape[1]):
            logits = program(input_ids=ids[:, position : position + 1], cache_position=torch.tensor([position]))
            torch.testing.assert_close(logits[:, 0], full[:, position], atol=1e-5, rtol=1e-5)
