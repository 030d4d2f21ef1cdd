"""AdamW over the trainable parameters, with the reference's weight-decay groups."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from backbones.errors import ConfigError


def is_no_decay(name: str, param: nn.Parameter) -> bool:
    """The reference's rule: no decay for 1-D tensors, biases and names containing ``token``."""
    return param.ndim <= 1 or name.endswith(".bias") or "token" in name


#: Name part of the parameters that ``cls_lr_scale`` applies to (ReCon's runner: ``'cls' in name``).
CLS_NAME_PART = "cls"


def param_groups(model: nn.Module, weight_decay: float, cls_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """The parameters that require grad in groups: no-decay first, then decay.

    With ``cls_lr_scale`` other than 1 (ReCon's recipe, 10), the parameters whose name contains
    ``cls`` (cls token and position, the head) form a third group, first, with ``lr_scale``
    (the schedule multiplies its lr by it) and the full weight decay for all of them, as ReCon's
    runner builds it. Frozen parameters are left out, so they get neither gradients' optimizer
    state nor updates.
    """
    scaled: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if cls_lr_scale != 1.0 and CLS_NAME_PART in name:
            scaled.append(param)
        else:
            (no_decay if is_no_decay(name, param) else decay).append(param)
    groups = [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]
    if cls_lr_scale != 1.0:
        groups.insert(0, {"params": scaled, "weight_decay": weight_decay, "lr_scale": float(cls_lr_scale)})
    return groups


def build_optimizer(
    model: nn.Module, optimizer_cfg: dict[str, Any], cls_lr_scale: float = 1.0
) -> torch.optim.Optimizer:
    """The optimizer of a config's ``optimizer`` section (only ``name: adamw`` exists);
    ``cls_lr_scale`` is ``training.cls_lr_scale`` (:func:`param_groups`)."""

    if optimizer_cfg["name"] != "adamw":
        raise ConfigError(f"unknown optimizer.name {optimizer_cfg['name']!r}; the only optimizer is 'adamw'")
    groups = param_groups(model, float(optimizer_cfg["weight_decay"]), cls_lr_scale)
    if not any(group["params"] for group in groups):
        raise ConfigError("nothing to train: no parameter requires grad after applying the peft method")
    lr = float(optimizer_cfg["lr"])
    for group in groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return torch.optim.AdamW(groups, lr=lr)
