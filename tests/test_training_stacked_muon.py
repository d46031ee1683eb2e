"""`StackedMuon` gives torch's Muon updates and state; `--hidden_optimizer muon` fuses its AdamW like `--optim`."""

import pytest
import torch
from torch import nn

from hf_custom_lm.training import LMTrainingArguments
from hf_custom_lm.training.optimizers import muon_with_adamw
from hf_custom_lm.training.stacked_muon import StackedMuon

# a decoder layer's shapes: square (q, k, v, o), tall (gate, up: intermediate x hidden), wide (down), and one
# shape alone
SHAPES = [(16, 16)] * 4 + [(40, 16)] * 2 + [(16, 40), (8, 24)]


def twin_parameters(seed: int = 0) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    generator = torch.Generator().manual_seed(seed)
    ours = [nn.Parameter(torch.randn(*shape, generator=generator) * 0.1) for shape in SHAPES]
    return ours, [nn.Parameter(p.detach().clone()) for p in ours]


@pytest.mark.parametrize("nesterov", [True, False])
def test_stacked_muon_updates_as_torchs_muon(nesterov):
    ours, theirs = twin_parameters()
    start = [p.detach().clone() for p in ours]
    kwargs = dict(lr=0.02, weight_decay=0.1, nesterov=nesterov, adjust_lr_fn="match_rms_adamw")
    stacked, reference = StackedMuon(ours, **kwargs), torch.optim.Muon(theirs, **kwargs)
    generator = torch.Generator().manual_seed(1)
    for _ in range(4):  # momentum carries over steps
        for a, b in zip(ours, theirs):
            a.grad = torch.randn(a.shape, generator=generator)
            b.grad = a.grad.clone()
        stacked.step(), reference.step()
    for a, b, before in zip(ours, theirs, start):
        update, expected = a.detach() - before, b.detach() - before
        assert update.abs().max() > 1e-3  # it moved
        # the same bf16 products, batched: equal up to bf16's rounding of a batched product's accumulation
        assert (update - expected).abs().max() <= 1e-2 * expected.abs().max()


def test_stacked_muon_state_loads_into_torchs_muon_and_back():
    ours, theirs = twin_parameters()
    stacked = StackedMuon(ours, lr=0.02)
    for p in ours:
        p.grad = torch.ones_like(p)
    stacked.step()
    reference = torch.optim.Muon(theirs, lr=0.02)
    reference.load_state_dict(stacked.state_dict())
    assert torch.equal(reference.state[theirs[4]]["momentum_buffer"], stacked.state[ours[4]]["momentum_buffer"])
    StackedMuon(ours, lr=0.02).load_state_dict(reference.state_dict())


def test_stacked_muon_skips_matrices_without_a_gradient():
    ours, _ = twin_parameters()
    before = [p.detach().clone() for p in ours]
    ours[0].grad = torch.ones_like(ours[0])
    StackedMuon(ours, lr=0.02, weight_decay=0.0).step()
    assert not torch.equal(ours[0], before[0])
    assert all(torch.equal(p, b) for p, b in zip(ours[1:], before[1:]))


@pytest.mark.parametrize("optim, fused", [("adamw_torch_fused", True), ("adamw_torch", None)])
def test_muons_adamw_is_fused_as_the_optim_says(optim, fused):
    model = nn.Sequential()
    model.layers = nn.ModuleList([nn.Linear(8, 8, bias=False)])
    model.norm = nn.LayerNorm(8)
    args = LMTrainingArguments(output_dir="unused", report_to=[], optim=optim)
    optimizer = muon_with_adamw(model, args, decay_parameter_names=[])
    assert isinstance(optimizer.muon, StackedMuon) and optimizer.adamw.defaults["fused"] is fused


def test_stacked_muon_steps_one_shape_in_two_dtypes_as_torchs_muon():
    # one stack (float64 by promotion), iterated in bf16 as torch iterates each matrix
    ours = [nn.Parameter(torch.randn(8, 8) * 0.1), nn.Parameter(torch.randn(8, 8, dtype=torch.float64) * 0.1)]
    theirs = [nn.Parameter(p.detach().clone()) for p in ours]
    for a, b in zip(ours, theirs):
        a.grad = torch.randn_like(a)
        b.grad = a.grad.clone()
    StackedMuon(ours, lr=0.02).step(), torch.optim.Muon(theirs, lr=0.02).step()
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and torch.allclose(a, b, rtol=0, atol=1e-4)
