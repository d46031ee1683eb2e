"""The modeling file stays correct when its kernels are swapped for their plain PyTorch expressions."""

import pytest
import torch
from torch import nn
from transformers.loss.loss_utils import ForCausalLMLoss

from hf_custom_lm import CustomLMForCausalLM
from hf_custom_lm.model import modeling_custom_lm

from .conftest import tiny_config


def plain_rms_norm(x, weight, eps):
    input_dtype = x.dtype
    x = x.to(torch.float32)
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(input_dtype)


def plain_swiglu(gate, up):
    return nn.functional.silu(gate) * up


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def plain_apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim: int = 2):
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def plain_linear_cross_entropy(hidden_states, weight, labels, **kwargs):
    return ForCausalLMLoss(hidden_states @ weight.T, labels, vocab_size=weight.shape[0], **kwargs)


PLAIN = {
    "rms_norm": plain_rms_norm,
    "swiglu": plain_swiglu,
    "apply_rotary_pos_emb": plain_apply_rotary_pos_emb,
    "linear_cross_entropy": plain_linear_cross_entropy,
}


def outputs(model, ids, labels):
    """Eval logits, then the training-mode loss and every parameter's gradient."""
    model.eval()
    with torch.no_grad():
        logits = model(ids).logits
    model.train()
    model.zero_grad()
    loss = model(ids, labels=labels).loss
    loss.backward()
    return logits, loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("swapped", [list(PLAIN), *[[name] for name in PLAIN]])
def test_plain_expressions_give_the_same_logits_loss_and_gradients(seeded, monkeypatch, swapped):
    model = CustomLMForCausalLM(tiny_config())
    ids = torch.randint(2, 512, (2, 13))
    labels = ids.clone()
    labels[0, :4] = -100
    fast = outputs(model, ids, labels)
    for name in swapped:
        monkeypatch.setattr(modeling_custom_lm, name, PLAIN[name])
    plain = outputs(model, ids, labels)
    torch.testing.assert_close(plain[0], fast[0])
    torch.testing.assert_close(plain[1], fast[1])
    assert plain[2].keys() == fast[2].keys()
    for name in fast[2]:
        torch.testing.assert_close(plain[2][name], fast[2][name], msg=name)


def test_kernels_are_what_the_modeling_file_calls():
    """The swap above only proves something if the modeling file reads these names at call time."""
    from hf_custom_lm.model import kernels_custom_lm

    for name in PLAIN:
        assert getattr(modeling_custom_lm, name) is getattr(kernels_custom_lm, name)
