"""The optimizer's parameter groups: `--embedding_lr_multiplier` and `--hidden_optimizer`.

`--embedding_lr_multiplier` gives the token embeddings (the output head too, when tied to them) a learning
rate of their own, a multiple of `learning_rate`. A row of the table moves only when its token is in the
batch, input or target, so a rare token's row gets few updates; at the same rate for all, the rows lag the
decoder under AdamW (benchmarks/RESULTS.md measures 0.3x, 1x, 3x and 10x). Under Muon, 3x lost to 1x in five
of six pairs at equal steps, so there it stays 1.

`--hidden_optimizer muon`: torch's Muon for the decoder's weight matrices, AdamW for everything else; the
default for a model trained from scratch (benchmarks/RESULTS.md: 0.013 to 0.044 bits per byte better than
AdamW at equal steps, and better on the clock at 150 and 300 CPU-s in every pair, though its step costs more).
`adamw`, the Trainer's `--optim` for every weight, stays the documented baseline and the default when training
continues from a model, with another `--optim`, and under FSDP or DeepSpeed, whose processes each hold a slice
of a weight where Muon needs the whole matrix.

Muon orthogonalises each matrix's momentum (Newton-Schulz iterations) before the update, here batched over
the matrices of one shape (`stacked_muon.py`: torch's update in fewer calls); it is defined for 2D weights
only, so embeddings, the output head, norms and biases keep AdamW, as in the Muon recipes. With
`adjust_lr_fn="match_rms_adamw"` Muon's updates have AdamW's scale, so one learning rate and one schedule
drive both. `MuonWithAdamW` is one `torch.optim.Optimizer` over both parameter sets, so the Trainer,
accelerate and learning-rate schedulers see a single optimizer; its state dict holds both optimizers'.
"""

import logging
import os
from pathlib import Path

import torch
from torch import nn
from transformers.training_args import OptimizerNames

from .stacked_muon import StackedMuon

logger = logging.getLogger(__name__)

# The `--optim` values under which an unset `--hidden_optimizer` may take Muon: the Trainer's AdamW.
ADAMW_OPTIMS = (OptimizerNames.ADAMW_TORCH, OptimizerNames.ADAMW_TORCH_FUSED)
# The embeddings' learning rate over the others' for a model trained from scratch with AdamW when
# `--embedding_lr_multiplier` is unset (benchmarks/RESULTS.md); 1 with Muon or when training continues from a model.
EMBEDDING_LR_MULTIPLIER = 3.0


def embedding_group_apart(groups: list[dict], embedding: nn.Parameter, multiplier: float) -> list[dict]:
    """`groups` (parameter-group dicts) with `embedding` moved out of its group into a group of its own, with
    that group's settings and `multiplier` times its learning rate; unchanged if no group holds it (frozen)."""
    for index, group in enumerate(groups):
        if any(p is embedding for p in group["params"]):
            rest = {**group, "params": [p for p in group["params"] if p is not embedding]}
            own = {**group, "params": [embedding], "lr": group["lr"] * multiplier}
            return [*groups[:index], *([rest] if rest["params"] else []), own, *groups[index + 1:]]
    return groups


def separate_embedding_lr(optimizer: torch.optim.Optimizer, embedding: nn.Parameter, multiplier: float) -> None:
    """Gives `embedding` `multiplier` times its group's learning rate in a new, stateless `optimizer` (before a
    scheduler records the groups' initial rates)."""
    groups = embedding_group_apart(optimizer.param_groups, embedding, multiplier)
    optimizer.param_groups = []
    for group in groups:
        optimizer.add_param_group(group)


class MuonWithAdamW(torch.optim.Optimizer):
    """Steps torch's Muon (`StackedMuon`) over `muon_groups` and a `torch.optim.AdamW` (`fused` as the Trainer's
    `--optim adamw_torch_fused` makes it) over `adamw_groups`; the two share their parameter-group dicts with
    this optimizer, so a scheduler's learning rate reaches both."""

    def __init__(self, muon_groups: list[dict], adamw_groups: list[dict], lr: float, betas=(0.9, 0.999),
                 eps: float = 1e-8, momentum: float = 0.95, fused: bool | None = None):
        self.muon = StackedMuon(muon_groups, lr=lr, momentum=momentum, adjust_lr_fn="match_rms_adamw")
        self.adamw = torch.optim.AdamW(adamw_groups, lr=lr, betas=betas, eps=eps, fused=fused)
        super().__init__(self.muon.param_groups + self.adamw.param_groups, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])
        # loading replaces each optimizer's group dicts: share the new ones, or a scheduler (which sets this
        # optimizer's groups' `lr`) would no longer reach the two that step. accelerate's `prepare` loads the
        # state once to place it on the device, so this happens in every Trainer run, not only on resume.
        self.param_groups = self.muon.param_groups + self.adamw.param_groups


def is_hidden_matrix(model: nn.Module, name: str, parameter: nn.Parameter) -> bool:
    """A 2D weight of a decoder layer (attention and MLP projections), not an embedding or the output head."""
    return parameter.ndim == 2 and ".layers." in f".{name}"


def sharded_training(training_args) -> bool:
    """FSDP or DeepSpeed, from the arguments or from `accelerate launch`'s environment."""
    launched = any(os.environ.get(f"ACCELERATE_USE_{name}", "").lower() in ("1", "true")
                   for name in ("FSDP", "DEEPSPEED"))
    return bool(training_args.fsdp or training_args.deepspeed) or launched


def checkpoint_hidden_optimizer(checkpoint: str | Path) -> str | None:
    """The `--hidden_optimizer` that wrote `checkpoint`'s optimizer state (None without one): a Muon state holds
    both optimizers' states under `muon` and `adamw`. Memory-mapped: only the keys are read."""
    path = Path(checkpoint) / "optimizer.pt"
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return "muon" if "muon" in state else "adamw"


def resolve_hidden_optimizer(training_args, from_scratch: bool, checkpoint: str | None = None) -> str:
    """Sets an unset `training_args.hidden_optimizer`: the one of the checkpoint a run resumes from, else
    `muon` for a model trained from scratch with the Trainer's AdamW on one process or DDP, else `adamw`."""
    if training_args.hidden_optimizer is None:
        resumed = checkpoint_hidden_optimizer(checkpoint) if checkpoint else None
        muon = from_scratch and training_args.optim in ADAMW_OPTIMS and not sharded_training(training_args)
        training_args.hidden_optimizer = resumed or ("muon" if muon else "adamw")
        why = ("as the checkpoint's optimizer state" if resumed else "the default for a model trained from scratch"
               if muon else "the default when training continues from a model, with another `--optim`, or "
               "under FSDP or DeepSpeed")
        logger.info(f"`--hidden_optimizer {training_args.hidden_optimizer}` ({why}).")
    return training_args.hidden_optimizer


def hidden_and_other_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[tuple[str, nn.Parameter]]]:
    """The trainable decoder weight matrices (Muon's), and the other trainable parameters with their names."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    hidden = [p for name, p in named if is_hidden_matrix(model, name, p)]
    return hidden, [(name, p) for name, p in named if not is_hidden_matrix(model, name, p)]


def muon_with_adamw(model: nn.Module, args, decay_parameter_names: list[str],
                    embedding_lr_multiplier: float = 1.0) -> MuonWithAdamW:
    """The optimizer for `--hidden_optimizer muon`, with the Trainer's weight-decay rule for the AdamW part, the
    embeddings' rate `embedding_lr_multiplier` times the others', and a fused AdamW under the default `--optim`,
    as the Trainer builds it: one kernel for all its tensors instead of several per update rule."""
    hidden, rest = hidden_and_other_parameters(model)
    adamw_groups = [
        {"params": [p for name, p in rest if name in decay_parameter_names], "weight_decay": args.weight_decay},
        {"params": [p for name, p in rest if name not in decay_parameter_names], "weight_decay": 0.0},
    ]
    adamw_groups = [dict(group, lr=args.learning_rate) for group in adamw_groups if group["params"]]
    if embedding_lr_multiplier != 1.0:
        adamw_groups = embedding_group_apart(adamw_groups, model.get_input_embeddings().weight, embedding_lr_multiplier)
    return MuonWithAdamW(
        [{"params": hidden, "weight_decay": args.weight_decay}], adamw_groups,
        lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
        fused=args.optim == OptimizerNames.ADAMW_TORCH_FUSED or None,
    )
