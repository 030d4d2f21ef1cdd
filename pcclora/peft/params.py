"""Parameter counts with the breakdown the profiler and the trainer's log print."""

from __future__ import annotations

from typing import Any

from torch import nn

from .bases import BANK_ATTRIBUTE
from .config import DEFAULT_PEFT_CONFIG
from .inject import CONFIG_ATTRIBUTE, head_module_names
from .layers import CLoRALinear, LoRALinear

GROUPS = ("bases", "coefficients", "lora", "head", "extras", "backbone_trainable", "frozen")


def count_parameters(model: nn.Module) -> dict[str, Any]:
    """Count parameters (each shared tensor once).

    Returns:
        ``{"total": int, "trainable": int, "groups": {group: int}}``.  The groups partition
        ``total``: ``bases`` (CLoRA's shared D and U), ``coefficients`` (CLoRA's Q, own or
        CLoRA#-shared), ``lora`` (LoRA factors), ``head`` (trainable head parameters),
        ``extras`` (trainable ``trainable_extra`` parameters), ``backbone_trainable`` (any
        other trainable parameter, e.g. the backbone under ``full``), ``frozen``.
    """
    config = getattr(model, CONFIG_ATTRIBUTE, None) or DEFAULT_PEFT_CONFIG
    modules = dict(model.named_modules())
    head_ids = {id(parameter) for name in head_module_names(model) for parameter in modules[name].parameters()}
    extras = tuple(config["trainable_extra"])
    groups = dict.fromkeys(GROUPS, 0)
    for name, parameter in model.named_parameters():
        owner = modules[name.rpartition(".")[0]]
        if not parameter.requires_grad:
            group = "frozen"
        elif name.startswith(BANK_ATTRIBUTE + "."):
            group = "coefficients" if name.endswith(".shared_coefficients") else "bases"
        elif isinstance(owner, CLoRALinear):
            group = "coefficients"
        elif isinstance(owner, LoRALinear):
            group = "lora"
        elif id(parameter) in head_ids:
            group = "head"
        elif any(name == extra or name.startswith(extra + ".") for extra in extras):
            group = "extras"
        else:
            group = "backbone_trainable"
        groups[group] += parameter.numel()
    total = sum(groups.values())
    return {"total": total, "trainable": total - groups["frozen"], "groups": groups}
