"""The tensor-parallel plan names exactly the projections that exist, for every combination of the switches, and
is Llama's for the default ones."""

import itertools
import re

import pytest
from torch import nn
from transformers import LlamaForCausalLM

from hf_custom_lm import CustomLMForCausalLM, CustomLMForSequenceClassification
from hf_custom_lm.hub.llama import to_llama_config

from .conftest import tiny_config
from .test_contract_outputs import classic_tiny_config

COMBINATIONS = [
    dict(position_embedding_type=position, norm_type=norm, mlp_type=mlp, hidden_act=act)
    for position, norm, (mlp, act) in itertools.product(
        ("rope", "sinusoidal", "learned"), ("rmsnorm", "layernorm"), (("gated", "silu"), ("gated", "gelu"), ("plain", "relu"))
    )
]


def matches(pattern: str, name: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", r"\d+"), name) is not None


def check_plan_matches_modules(model):
    modules = dict(model.named_modules())
    plan = model.tp_plan
    for pattern in plan:
        assert any(matches(pattern, name) for name in modules), f"plan names {pattern!r}, which no module matches"
    projections = [name for name, module in modules.items() if isinstance(module, nn.Linear) and ".layers." in name]
    for name in projections:
        assert any(matches(pattern, name) for pattern in plan), f"{name} is not in the plan"


@pytest.mark.parametrize("switches", COMBINATIONS, ids=lambda s: "-".join(s.values()))
def test_tp_plan_names_the_modules_that_exist(switches):
    for model_class in (CustomLMForCausalLM, CustomLMForSequenceClassification):
        check_plan_matches_modules(model_class(tiny_config(num_hidden_layers=1, **switches)))


def test_tp_plan_with_the_classic_switches():
    check_plan_matches_modules(CustomLMForCausalLM(classic_tiny_config(num_hidden_layers=1)))


def test_tp_plan_is_llamas_with_the_default_switches():
    assert CustomLMForCausalLM(tiny_config()).tp_plan == LlamaForCausalLM(to_llama_config(tiny_config())).tp_plan
