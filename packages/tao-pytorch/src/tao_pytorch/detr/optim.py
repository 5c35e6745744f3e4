"""Training knobs of a DETR spec that act on the model: parameter groups, optimizer, schedule,
freezing and activation checkpointing.

Parameter groups follow the reference repos (fundamentalvision/Deformable-DETR and
IDEA-Research/DINO `main.py`), which TAO copies:
    "backbone"     parameters under `backbone.0`                     lr = optim.lr_backbone
    "linear_proj"  `sampling_offsets` / `reference_points` layers    lr = optim.lr * optim.lr_linear_proj_mult
    "main"         everything else                                    lr = optim.lr
Only trainable parameters (requires_grad) enter a group; empty groups are left out.

Layer-wise lr decay (TAO's rule for ViT backbones, DINO's `optim.layer_decay_rate`): when the spec
has the field and the backbone trunk numbers its layers (`lr_layer_id(name) -> (layer_id, L)`,
e.g. ViTAdapter: patch / position embedding 0, block i -> i + 1, the adapter L + 1), the trunk's
parameters go to groups "backbone_layer<id>" with lr = optim.lr * rate ** (L + 1 - layer_id)
instead of the "backbone" group (TAO scales optim.lr there, not optim.lr_backbone).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tao_core.errors import TaoUserError

log = logging.getLogger(__name__)

BACKBONE_NAMES = ("backbone.0",)
LINEAR_PROJ_NAMES = ("reference_points", "sampling_offsets")


def _matches(name: str, keywords: Iterable[str]) -> bool:
    return any(k in name for k in keywords)


def _layer_decay_trunk(model: nn.Module, optim_cfg: Any):
    """(name prefix, trunk, rate) of a backbone trunk with numbered layers when the spec asks for
    layer-wise decay (has layer_decay_rate), else None."""
    rate = getattr(optim_cfg, "layer_decay_rate", None)
    if rate is None:
        return None
    for mname, m in model.named_modules():
        if callable(getattr(m, "lr_layer_id", None)) and _matches(mname + ".", BACKBONE_NAMES):
            return mname + ".", m, float(rate)
    return None


def param_groups(model: nn.Module, optim_cfg: Any, verbose: bool = False) -> list[dict]:
    """Optimizer parameter groups (see the module docstring), each with a "name"."""
    lr = float(optim_cfg.lr)
    specs = [
        ("main", lr),
        ("backbone", float(optim_cfg.lr_backbone)),
        ("linear_proj", lr * float(optim_cfg.lr_linear_proj_mult)),
    ]
    decay = _layer_decay_trunk(model, optim_cfg)
    layer_lrs: dict[str, float] = {}
    members: dict[str, list] = {name: [] for name, _ in specs}
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if decay is not None and pname.startswith(decay[0]):
            prefix, trunk, rate = decay
            layer_id, num_layers = trunk.lr_layer_id(pname[len(prefix) :])
            group = f"backbone_layer{layer_id:02d}"
            layer_lrs[group] = lr * rate ** (num_layers + 1 - layer_id)
            members.setdefault(group, [])
        elif _matches(pname, BACKBONE_NAMES):
            group = "backbone"
        elif _matches(pname, LINEAR_PROJ_NAMES):
            group = "linear_proj"
        else:
            group = "main"
        members[group].append((pname, p))
    specs += sorted(layer_lrs.items())
    groups = []
    for name, group_lr in specs:
        if not members[name]:
            continue
        groups.append({"params": [p for _, p in members[name]], "lr": group_lr, "name": name})
        count = sum(p.numel() for _, p in members[name])
        log.info("optimizer group %-11s lr %.3g: %d tensors, %d parameters", name, group_lr, len(members[name]), count)
        if verbose:
            for pname, p in members[name]:
                log.info("  lr %.3g  %s %s", group_lr, pname, tuple(p.shape))
    if not groups:
        raise TaoUserError("nothing to train: every parameter is frozen (train.freeze / model.train_backbone)")
    return groups


def build_optimizer(groups: list[dict], optim_cfg: Any, shard_across_ranks: bool = False) -> torch.optim.Optimizer:
    """AdamW (betas (momentum, 0.999)) or SGD (momentum), with the spec's weight decay.

    shard_across_ranks (train.distributed_strategy ddp_sharded with several processes): wrap it
    in torch's ZeroRedundancyOptimizer, which keeps each rank's share of the optimizer state only
    (what fairscale's OSS did for TAO's "Sharded DDP").
    """
    name = optim_cfg.optimizer
    wd = float(optim_cfg.weight_decay)
    momentum = float(optim_cfg.momentum)
    if name == "AdamW":
        cls, kwargs = torch.optim.AdamW, {"weight_decay": wd, "betas": (momentum, 0.999)}
    elif name == "SGD":
        cls, kwargs = torch.optim.SGD, {"weight_decay": wd, "momentum": momentum}
    else:
        raise TaoUserError(f"train.optim.optimizer: got {name!r}; expected AdamW or SGD")
    lr = groups[0]["lr"]
    if shard_across_ranks:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        return ZeroRedundancyOptimizer(groups, optimizer_class=cls, lr=lr, **kwargs)
    return cls(groups, lr=lr, **kwargs)


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per epoch: MultiStep (x lr_decay at each epoch of lr_steps) or StepLR
    (x lr_decay every lr_step_size epochs). Epoch e (0-based) trains with lr * decay^(steps <= e)."""
    name = optim_cfg.lr_scheduler
    if name == "MultiStep":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=[int(s) for s in optim_cfg.lr_steps], gamma=float(optim_cfg.lr_decay)
        )
    if name == "StepLR":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=int(optim_cfg.lr_step_size), gamma=float(optim_cfg.lr_decay)
        )
    raise TaoUserError(f"train.optim.lr_scheduler: got {name!r}; expected MultiStep or StepLR")


def freeze_modules(model: nn.Module, paths: Iterable[str]) -> list[str]:
    """Set requires_grad False under each dotted module path (e.g. "backbone", "transformer.encoder",
    "input_proj.0"); a parameter name works too. Unknown paths raise one TaoUserError naming all."""
    paths = [str(p) for p in paths]
    unknown = []
    for path in paths:
        try:
            target = model.get_submodule(path)
            params = list(target.parameters())
        except AttributeError:
            try:
                params = [model.get_parameter(path)]
            except AttributeError:
                unknown.append(path)
                continue
        for p in params:
            p.requires_grad_(False)
    if unknown:
        top = [name for name, _ in model.named_children()]
        raise TaoUserError(
            f"train.freeze: no module named {unknown} in the model; give dotted module paths such as "
            f"'backbone', 'transformer.encoder' or 'input_proj' (top-level modules: {top})"
        )
    if paths:
        log.info("frozen: %s", ", ".join(paths))
    return paths


def checkpointed_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer encoder and decoder layers (the activation-heavy part of DETR models), and
    the units a backbone trunk lists with a `checkpoint_units()` method (e.g. GCViT's stages)."""
    transformer = getattr(model, "transformer", None)
    layers: list[nn.Module] = []
    for part in ("encoder", "decoder"):
        stack = getattr(transformer, part, None)
        layers += list(getattr(stack, "layers", []))
    for m in model.modules():
        units = getattr(m, "checkpoint_units", None)
        if callable(units):
            layers += list(units())
    return layers


def enable_activation_checkpointing(model: nn.Module) -> int:
    """Recompute each encoder / decoder layer in the backward pass instead of keeping its
    activations (torch.utils.checkpoint, non-reentrant). Parameter names do not change: the
    layer's forward is wrapped in place. Inactive in eval mode and under no_grad. Returns the
    number of layers wrapped."""
    layers = checkpointed_layers(model)
    for layer in layers:
        if getattr(layer, "_tao_checkpointed", False):
            continue
        layer.forward = functools.partial(_checkpointed_forward, layer, layer.forward)
        layer._tao_checkpointed = True
    return len(layers)


def _checkpointed_forward(layer: nn.Module, forward, *args, **kwargs):
    if layer.training and torch.is_grad_enabled():
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)
