"""Training mode computes the loss without logits; it must equal the standard path exactly enough."""

import pytest
import torch

from hf_custom_lm import CustomLMForCausalLM
from hf_custom_lm.model.kernels_custom_lm import (
    LinearCrossEntropy,
    RMSNormFunction,
    RotaryFunction,
    SiLUMulFunction,
)
from hf_custom_lm.model.kernels_custom_lm import _rotate as rotate

from .conftest import tiny_config


def loss_and_grads(model, ids, labels, **kwargs):
    model.zero_grad()
    out = model(ids, labels=labels, **kwargs)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("num_items", [None, 37])
def test_fused_training_loss_matches_the_logits_path(seeded, num_items):
    model = CustomLMForCausalLM(tiny_config())
    ids = torch.randint(2, 512, (3, 11))
    labels = ids.clone()
    labels[0, :5] = -100
    kwargs = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    model.train()
    fused, fused_grads = loss_and_grads(model, ids, labels, **kwargs)
    assert fused.logits is None
    model.eval()  # no dropout in the tiny config: same maths, standard loss on full logits
    plain, plain_grads = loss_and_grads(model, ids, labels, **kwargs)
    assert plain.logits is not None
    torch.testing.assert_close(fused.loss, plain.loss, atol=1e-6, rtol=1e-6)
    for name in plain_grads:
        torch.testing.assert_close(fused_grads[name], plain_grads[name], atol=1e-6, rtol=1e-4, msg=name)


def test_fused_loss_off_runs_the_head_and_its_hooks(seeded):
    """`fused_loss=False` gives training-mode logits through `lm_head` itself, so a hook on the head sees them;
    with the default the head's forward is skipped and the loss is the same."""
    model = CustomLMForCausalLM(tiny_config(fused_loss=False)).train()
    seen = []
    model.lm_head.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    ids = torch.randint(2, 512, (2, 6))
    plain = model(ids, labels=ids)
    assert plain.logits.shape == (2, 6, 512) and seen == [(2, 6, 512)]
    model.config.fused_loss = True
    fused = model(ids, labels=ids)
    assert fused.logits is None and len(seen) == 1
    torch.testing.assert_close(fused.loss, plain.loss)


def test_custom_autograd_functions_pass_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: RMSNormFunction.apply(a, b, 1e-6), (x, w))
    frozen = w.detach()  # the other branch of the backward pass: no weight gradient to share work with
    assert torch.autograd.gradcheck(lambda a: RMSNormFunction.apply(a, frozen, 1e-6), (x,))
    gate = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    up = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SiLUMulFunction.apply, (gate, up))


def test_rotary_function_gradient_needs_and_gets_the_sign_folded_into_sin():
    """The written-out backward holds for tables whose sin halves are negatives of each other, which is what
    `apply_rotary_pos_emb` makes of Llama's tables; gradcheck with such tables, and against autograd through `rotate`."""
    torch.manual_seed(0)
    half = torch.randn(2, 5, 1, 3, dtype=torch.float64)
    cos = torch.randn(2, 5, 1, 6, dtype=torch.float64)
    sin = torch.cat((-half, half), dim=-1)
    x = torch.randn(2, 5, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: RotaryFunction.apply(a, cos, sin), (x,))
    grad = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    (expected,) = torch.autograd.grad(rotate(x, cos, sin), x, grad)
    (got,) = torch.autograd.grad(RotaryFunction.apply(x, cos, sin), x, grad)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", ["norm", "swiglu", "loss"])
def test_second_derivatives_raise_instead_of_being_wrong(name):
    """The norm and the fused loss save tensors without their graph, and aten's silu_backward has no derivative:
    asking for a graph of their gradients must raise by name, not return a wrong second derivative."""
    torch.manual_seed(0)
    a = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4 if name == "swiglu" else 16 if name == "loss" else 1, 8, dtype=torch.float64, requires_grad=True)
    if name == "norm":
        out = RMSNormFunction.apply(a, b[0], 1e-6).pow(2).sum()
    elif name == "swiglu":
        out = SiLUMulFunction.apply(a, b).pow(2).sum()
    else:
        out = LinearCrossEntropy.apply(a, b, torch.tensor([1, 2, 3, -100]), -100, None, (True, True))
    with pytest.raises(RuntimeError, match="cannot be differentiated twice"):
        torch.autograd.grad(out, (a, b), create_graph=True)
    assert all(g is not None for g in torch.autograd.grad(out, (a, b)))  # first order still works


def test_fused_loss_of_no_rows_is_nan_like_cross_entropy():
    """Zero rows (an empty batch) must not break the chunk loop: the mean over nothing is nan, as in torch."""
    hidden = torch.zeros(0, 8, requires_grad=True)
    weight = torch.randn(16, 8, requires_grad=True)
    targets = torch.zeros(0, dtype=torch.long)
    loss = LinearCrossEntropy.apply(hidden, weight, targets, -100, None, (True, True))
    assert loss.isnan() and torch.nn.functional.cross_entropy(torch.zeros(0, 16), targets).isnan()
