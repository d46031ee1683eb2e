"""`StackedMuon`: torch's Muon with the Newton-Schulz iterations of same-shape matrices run as one batched product.

`torch.optim.Muon` orthogonalises each weight matrix's momentum on its own: five Newton-Schulz iterations of
three small bf16 matrix products each, so a decoder of L layers launches 7 x L x 15 products a step. For the
small models trained on a CPU those products are mostly call overhead, not arithmetic (the cost per shape is
in benchmarks/RESULTS.md, from `benchmarks/bench_optimizer.py`). A decoder's matrices come in two or three
shapes (q/k/v/o, gate/up, down), so stacking each shape (tall matrices transposed, as torch's iteration
transposes them) and iterating with `torch.baddbmm` gives the same update in a few calls. The state
(`momentum_buffer`), the parameter groups, the learning-rate adjustment and the weight decay are torch's, so
a state dict loads into either optimizer.
"""

from collections import defaultdict

import torch
from torch.optim._muon import _adjust_lr


def newton_schulz(updates: torch.Tensor, coefficients: tuple[float, float, float], steps: int,
                  eps: float) -> torch.Tensor:
    """The orthogonalised `updates` ([matrices, rows, columns], rows <= columns), in bf16: torch's quintic
    iteration (`torch.optim._muon._zeropower_via_newtonschulz`) on a stack of matrices at once."""
    a, b, c = coefficients
    x = updates.bfloat16()
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.mT  # [matrices, rows, rows]
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x


class StackedMuon(torch.optim.Muon):
    """`torch.optim.Muon` (same arguments, state and update) with the Newton-Schulz iterations of each group's
    same-shape matrices batched."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, buffers = [], [], []
            self._init_group(group, params, grads, buffers)
            if not params:
                continue
            momentum = group["momentum"]
            torch._foreach_lerp_(buffers, grads, 1 - momentum)
            updates = torch._foreach_lerp(grads, buffers, momentum) if group["nesterov"] else buffers
            # tall matrices are iterated transposed (wide), so a shape and its transpose share a stack; a stack
            # lives on one device (a model split over devices); mixed dtypes promote, and iterate in bf16 anyway
            stacks = defaultdict(list)
            for index, update in enumerate(updates):
                tall = update.size(0) > update.size(1)
                stacks[((update.T if tall else update).shape, update.device)].append((index, tall))
            for members in stacks.values():
                stacked = torch.stack([updates[i].T if tall else updates[i] for i, tall in members])
                orthogonal = newton_schulz(stacked, group["ns_coefficients"], group["ns_steps"], group["eps"])
                for (index, tall), update in zip(members, orthogonal):
                    param = params[index]
                    param.mul_(1 - group["lr"] * group["weight_decay"])
                    param.add_(update.T if tall else update, alpha=-_adjust_lr(group["lr"], group["adjust_lr_fn"],
                                                                               param.shape))
        return loss
