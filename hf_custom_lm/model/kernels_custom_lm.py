"""Training and inference kernels of CustomLM, behind four plain functions that `modeling_custom_lm.py` calls:

    rms_norm(x, weight, eps)                      weight * x / sqrt(mean(x^2) + eps), statistics in fp32
    swiglu(gate, up)                              silu(gate) * up
    apply_rotary_pos_emb(q, k, cos, sin)          Llama's x * cos + rotate_half(x) * sin, for q and k
    linear_cross_entropy(hidden, weight, labels)  ForCausalLMLoss(hidden @ weight.T, labels)

Each returns what its plain PyTorch expression returns, with the same first-order gradients (tests swap
them for those expressions and compare the model's logits and gradients). What they save over autograd:
fewer activations kept for the backward pass, products made in place, the rotary backward written out, and
a loss that never builds the (N, V) logits (or, given a candidate sampler, estimates it by a sampled softmax,
for training). Their backward passes cannot be differentiated again; asking
for it (`create_graph=True`) raises instead of returning a wrong second derivative.

This file is copied to the Hub next to the modeling file; it imports only torch.
"""

import torch
from torch import nn

# Logits the fused loss holds at once: 2**21 values (256 rows at V = 8192), whatever the batch, so the head's
# memory does not grow with it; the size was chosen by timing the training step (benchmarks/).
LOSS_CHUNK_LOGITS = 2**21


def autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast gives matmuls on x's device, or None outside autocast."""
    device_type = x.device.type
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


def refuse_second_derivative(ctx) -> None:
    """Called first in a backward pass whose saved tensors carry no graph: under `create_graph=True` it would
    return a wrong second derivative, or fail somewhere unrelated, so say what is wrong here."""
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise RuntimeError(
            f"{type(ctx).__name__.removesuffix('Backward')} cannot be differentiated twice: second-order gradients "
            "(`create_graph=True`, Hessian-vector products) are not supported by this model's training "
            "kernels. Compute first-order gradients only."
        )


# ---------------------------------------------------------------------------------------------------------------
# RMSNorm
# ---------------------------------------------------------------------------------------------------------------


class RMSNormFunction(torch.autograd.Function):
    """weight * x / rms(x) for fp32 x (..., D), keeping normed = x / rms(x) and 1 / rms(x) (..., 1) for the
    backward pass, where autograd would also keep x: one activation fewer per norm.

    The backward pass needs mean(g * weight * normed) per row; it is computed as (g * normed) @ weight / D,
    a matrix-vector product over the product the weight gradient needs anyway: 6 passes over (..., D)
    instead of 8.
    """

    @staticmethod
    def forward(ctx, x, weight, eps):
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        normed = x * rstd
        ctx.save_for_backward(normed, weight, rstd)
        return normed * weight

    @staticmethod
    def backward(ctx, grad_output):
        refuse_second_derivative(ctx)
        normed, weight, rstd = ctx.saved_tensors
        grad_weight = None
        grad_normed = grad_output * weight
        if ctx.needs_input_grad[1]:
            grad_times_normed = grad_output * normed
            grad_weight = grad_times_normed.flatten(0, -2).sum(0)
            dot = (grad_times_normed @ weight).unsqueeze(-1).div_(normed.shape[-1])  # (..., 1)
        else:  # frozen weight (adapters): no product to reuse
            dot = (grad_normed * normed).mean(-1, keepdim=True)
        # d/dx (x * rstd) = rstd * (g - normed * mean(g * normed)), with g = grad_output * weight; in place in
        # grad_normed, which nothing else reads
        return grad_normed.addcmul_(normed, dot, value=-1).mul_(rstd), grad_weight, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Llama's RMSNorm. fp32 input and weight: `RMSNormFunction` when gradients are recorded, else torch's
    `rms_norm` (one dispatch); half precision: Llama's order, normalise in fp32, round, then scale."""
    if x.dtype == weight.dtype == torch.float32:
        if torch.is_grad_enabled():
            return RMSNormFunction.apply(x, weight, eps)
        return nn.functional.rms_norm(x, weight.shape, weight, eps)
    input_dtype = x.dtype
    x = x.to(torch.float32)
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(input_dtype)


# ---------------------------------------------------------------------------------------------------------------
# SwiGLU
# ---------------------------------------------------------------------------------------------------------------


class SiLUMulFunction(torch.autograd.Function):
    """silu(gate) * up, keeping gate and up for the backward pass and recomputing silu(gate) there, where
    autograd would also keep silu(gate): one (B, T, I) activation fewer per layer. Products are made in place
    in tensors this function just created."""

    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return nn.functional.silu(gate).mul_(up)

    @staticmethod
    def backward(ctx, grad_output):
        refuse_second_derivative(ctx)
        gate, up = ctx.saved_tensors
        sigmoid = torch.sigmoid(gate)
        silu = gate * sigmoid
        # silu'(gate) = s + silu * (1 - s), with s = sigmoid(gate): made in place in `sigmoid`
        derivative = sigmoid.addcmul_(silu, sigmoid, value=-1).add_(silu)
        grad_gate = (grad_output * up).mul_(derivative)
        return grad_gate, silu.mul_(grad_output)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up: through `SiLUMulFunction` when gradients are recorded, else in place in gate's
    activation (no temporaries)."""
    if torch.is_grad_enabled():
        return SiLUMulFunction.apply(gate, up)
    return nn.functional.silu(gate, inplace=True).mul_(up)


# ---------------------------------------------------------------------------------------------------------------
# Rotary positions
# ---------------------------------------------------------------------------------------------------------------


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor, sign: int = 1) -> torch.Tensor:
    """x * cos + sign * roll(x, hd/2) * signed_sin: two new tensors (the product, the roll), the sum in place.

    roll(x, hd/2) = cat(x2, x1) is rotate_half(x) = cat(-x2, x1) up to the sign of its first half, which
    `signed_sin` carries."""
    return (x * cos).addcmul_(x.roll(x.shape[-1] // 2, dims=-1), signed_sin, value=sign)


class RotaryFunction(torch.autograd.Function):
    """`_rotate` with its backward written out: rolling by half the head dimension is its own inverse and moves
    the sign folded into `signed_sin` to the other half, so the gradient is g * cos - roll(g, hd/2) * signed_sin,
    the forward's three kernels again, where autograd runs four (two products, a roll, a sum)."""

    @staticmethod
    def forward(ctx, x, cos, signed_sin):
        ctx.save_for_backward(cos, signed_sin)
        return _rotate(x, cos, signed_sin)

    @staticmethod
    def backward(ctx, grad_output):
        cos, signed_sin = ctx.saved_tensors
        return _rotate(grad_output, cos, signed_sin, sign=-1), None, None


# The last `sin` table and its sign-folded copy: every layer of a forward gets the same table, so the copy is
# made once per forward, not once per layer.
_last_signed: list = [None, None]


def _signed(sin: torch.Tensor) -> torch.Tensor:
    """cat(-sin1, sin2) for sin = cat(sin1, sin2) along the last axis."""
    if _last_signed[0] is sin and not torch.compiler.is_compiling():
        return _last_signed[1]
    half = sin.shape[-1] // 2
    signed = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
    if not torch.compiler.is_compiling():
        _last_signed[:] = [sin, signed]
    return signed


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim: int = 2):
    """Llama's `x * cos + rotate_half(x) * sin` for q (B, T, H, hd) and k (B, T, Hkv, hd), before the head
    transpose so the products run on contiguous memory; cos, sin (B, T, hd), broadcast over the head axis.

    One `roll` per tensor instead of chunk, negate and concatenate: the first half of `sin` is negated once per
    table, for q and k and every layer."""
    signed_sin = _signed(sin).unsqueeze(unsqueeze_dim)
    cos = cos.unsqueeze(unsqueeze_dim)
    if torch.is_grad_enabled() and not (cos.requires_grad or signed_sin.requires_grad):
        return RotaryFunction.apply(q, cos, signed_sin), RotaryFunction.apply(k, cos, signed_sin)
    return _rotate(q, cos, signed_sin), _rotate(k, cos, signed_sin)


# ---------------------------------------------------------------------------------------------------------------
# Output projection fused with the cross-entropy
# ---------------------------------------------------------------------------------------------------------------


class LinearCrossEntropy(torch.autograd.Function):
    """Cross-entropy of `hidden @ weight.T` against `targets`, over chunks of rows, so the full (N, V) logits,
    their fp32 copy and their softmax are never stored; the gradients are computed in the forward pass.

    Same result as `ForCausalLMLoss` on the full logits: fp32 softmax of logits computed in the autocast dtype,
    rows whose target is `ignore_index` ignored, the summed loss divided by `divisor` (`num_items_in_batch`)
    or, when it is None, by the number of counted rows.

    With `candidates` (C,), sorted token ids that hold every counted target, it is a sampled softmax instead:
    each row's softmax runs over those C tokens only, every candidate's logit lowered by `log_inclusion` (C,),
    the log-probability that it was drawn as a candidate (Jean et al. 2015; TensorFlow's
    `sampled_softmax_loss`), so the (N, V) products of the head become (N, C) ones; rows of `weight` that are
    not candidates get no gradient.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, divisor, needs_grad, candidates=None, log_inclusion=None):
        # hidden (N, D), weight (V, D), targets (N,); candidates and log_inclusion (C,) or None
        device_type = hidden.device.type
        dtype = autocast_dtype(hidden) or hidden.dtype
        with torch.autocast(device_type, enabled=False):
            rows_weight = weight if candidates is None else weight[candidates]  # (V or C, D)
            h, w = hidden.to(dtype), rows_weight.to(dtype)
            counted = targets != ignore_index
            safe_targets = torch.where(counted, targets, 0)
            if candidates is not None:  # a target's column among the candidates
                safe_targets = torch.searchsorted(candidates, safe_targets).clamp_(max=len(candidates) - 1)
            safe_targets = safe_targets.unsqueeze(1)  # (N, 1)
            if divisor is None:
                divisor = counted.sum()
            scale = counted / divisor  # (N,): d(loss)/d(row loss)
            grad_hidden = torch.empty_like(hidden) if needs_grad[0] else None
            grad_weight = torch.zeros_like(rows_weight, dtype=torch.float32) if needs_grad[1] else None
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            chunk = max(1, min(h.shape[0], LOSS_CHUNK_LOGITS // w.shape[0]))
            # One (chunk, V) buffer for every chunk's logits: a fresh tensor of that size per chunk comes from
            # new pages of memory, which the kernel must fault in and zero each time.
            buffer = torch.empty(chunk, w.shape[0], dtype=dtype, device=hidden.device)
            for start in range(0, h.shape[0], chunk):
                rows = slice(start, start + chunk)
                logits = torch.mm(h[rows], w.T, out=buffer[: len(h[rows])]).float()  # (n, V)
                if log_inclusion is not None:
                    logits.sub_(log_inclusion)
                target_logits = logits.gather(1, safe_targets[rows]).squeeze(1)  # (n,)
                row_max = logits.amax(dim=-1, keepdim=True)
                exp_logits = logits.sub_(row_max).exp_()  # in place: the logits are not needed again
                sum_exp = exp_logits.sum(dim=-1, keepdim=True)
                row_loss = (sum_exp.log() + row_max).squeeze(1) - target_logits  # logsumexp - target logit
                loss += torch.where(counted[rows], row_loss, 0.0).sum()
                if grad_hidden is None and grad_weight is None:
                    continue
                # d(loss)/d(logits) = (softmax - one_hot(target)) * scale, built in place
                row_scale = scale[rows].unsqueeze(1)  # (n, 1)
                grad_logits = exp_logits.mul_(row_scale / sum_exp)
                grad_logits.scatter_add_(1, safe_targets[rows], -row_scale)
                grad_logits = grad_logits.to(dtype)
                if grad_hidden is not None and grad_hidden.dtype == dtype:
                    torch.mm(grad_logits, w, out=grad_hidden[rows])  # straight into its rows, no temporary
                elif grad_hidden is not None:
                    grad_hidden[rows] = grad_logits @ w
                if grad_weight is not None and dtype == torch.float32:
                    grad_weight.addmm_(grad_logits.T, h[rows])  # accumulates without a (V, D) temporary
                elif grad_weight is not None:
                    grad_weight += grad_logits.T @ h[rows]
            if grad_weight is not None and candidates is not None:  # the candidates' rows into the full table
                grad_weight = torch.zeros_like(weight, dtype=torch.float32).index_add_(0, candidates, grad_weight)
        ctx.weight_dtype = weight.dtype
        ctx.save_for_backward(grad_hidden, grad_weight)
        return loss / divisor

    @staticmethod
    def backward(ctx, grad_loss):
        refuse_second_derivative(ctx)
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_loss.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_loss).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None, None, None, None, None


def linear_cross_entropy(
    hidden_states: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = -100,
    shift_labels: torch.Tensor | None = None,
    candidate_sampler=None,
    **kwargs,
) -> torch.Tensor:
    """`ForCausalLMLoss(hidden_states @ weight.T, labels, ...)` without the logits: hidden_states (B, T, D),
    labels (B, T) unshifted (or `shift_labels` already shifted), the same keyword arguments and result.

    `candidate_sampler`, when gradients are on: a callable that takes the counted targets (M,) and returns
    sorted `candidates` (C,) holding them all and their `log_inclusion` (C,), for a sampled softmax
    (`LinearCrossEntropy`); the loss is then an estimate that is lower than the full softmax's."""
    if shift_labels is None:
        shift_labels = nn.functional.pad(labels, (0, 1), value=ignore_index)[..., 1:]  # (B, T): next token
    hidden = hidden_states.reshape(-1, hidden_states.shape[-1])  # (B * T, D)
    grad_enabled = torch.is_grad_enabled()
    needs_grad = (grad_enabled and hidden.requires_grad, grad_enabled and weight.requires_grad)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(hidden.device)
    targets = shift_labels.reshape(-1).to(hidden.device, torch.long)
    if candidate_sampler is None or not any(needs_grad):
        return LinearCrossEntropy.apply(hidden, weight, targets, ignore_index, num_items_in_batch, needs_grad)
    candidates, log_inclusion = candidate_sampler(targets[targets != ignore_index])
    return LinearCrossEntropy.apply(
        hidden, weight, targets, ignore_index, num_items_in_batch, needs_grad, candidates, log_inclusion
    )
