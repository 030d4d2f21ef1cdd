"""AdamW over the trainable parameters, with the reference's weight-decay groups."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from backbones.errors import ConfigError


def is_no_decay(name: str, param: nn.Parameter) -> bool:
    """The reference's rule: no decay for 1-D tensors, biases and names containing ``token``."""
    return param.ndim <= 1 or name.endswith(".bias") or "token" in name


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups of the parameters that require grad: no-decay first, then decay.

    Frozen parameters are left out, so they get neither gradients' optimizer state nor updates.
    """
    no_decay: list[nn.Parameter] = []
    decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if is_no_decay(name, param) else decay).append(param)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def build_optimizer(model: nn.Module, optimizer_cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimizer of a config's ``optimizer`` section (only ``name: adamw`` exists)."""

    if optimizer_cfg["name"] != "adamw":
        raise ConfigError(f"unknown optimizer.name {optimizer_cfg['name']!r}; the only optimizer is 'adamw'")
    groups = param_groups(model, float(optimizer_cfg["weight_decay"]))
    if not any(group["params"] for group in groups):
        raise ConfigError("nothing to train: no parameter requires grad after applying the peft method")
    return torch.optim.AdamW(groups, lr=float(optimizer_cfg["lr"]))
